"""pipeline.sweep.summary and the sweep plots on the edge cases: no trial produced a metric."""

from __future__ import annotations

import csv
import math

import pytest

from pipeline import plots
from pipeline.sweep import summary
from pipeline.sweep.spec import load_sweep

DIVERGED = "training diverged at epoch {}: loss=nan (non-finite loss or weight). Lower the rate."


def spec(**over):
    raw = {"name": "all-failed", "base": {"data": {"source": "xor"}}, "seeds": [1, 2],
           "objective": {"metric": "train_MSE"}, "space": {"model.hidden": [[8], [9]]}}
    return load_sweep({**raw, **over})


def rows(errors: list[str], status: str = "failed") -> list[dict]:
    return [{"key": f"k{i}", "config_key": f"c{i % 2}", "seed": i // 2, "rung": 0, "status": status,
             "objective": math.nan, "metrics": {}, "run_id": f"r{i}", "error": e,
             "axes": {"model.hidden": [8 + i % 2]}} for i, e in enumerate(errors)]


def test_a_summary_with_no_metric_writes_its_tables_and_says_why_every_trial_failed(tmp_path):
    errors = [DIVERGED.format(3), DIVERGED.format(5), DIVERGED.format(2), "MemoryError: out of memory"]
    result = summary.write_summary(tmp_path, rows(errors), spec(), ["model.hidden"])
    assert result["best"] is None
    assert result["metrics"]["trials_finished"] == 0 and result["metrics"]["trials_failed"] == 4
    assert math.isnan(result["metrics"]["best_train_MSE"])
    # the commonest error, with its count (epoch numbers differ, the error is the same)
    note = result["failure_note"]
    assert note.startswith("no trial produced train_MSE: 4 of 4 trials failed")
    assert "commonest error (3 of 4): training diverged at epoch" in note
    board = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    assert [r["status"] for r in board] == ["failed"] * 4
    census = list(csv.DictReader(open(tmp_path / "census.csv")))
    assert [r["n_failed"] for r in census] == ["2", "2"]
    assert (tmp_path / "census.png").exists() and (tmp_path / "axis_model.hidden.png").exists()
    assert "no trial produced train_MSE" in (tmp_path / "leaderboard.md").read_text()


def test_skipped_trials_count_as_producing_no_metric(tmp_path):
    skipped = rows(["max_runtime_secs reached before start"] * 4, status="skipped")
    result = summary.write_summary(tmp_path, skipped, spec(), ["model.hidden"])
    assert result["failure_note"] == ("no trial produced train_MSE: 4 of 4 trials skipped; commonest error "
                                      "(4 of 4): max_runtime_secs reached before start")


def test_a_summary_with_a_finished_trial_has_no_failure_note(tmp_path):
    some = rows([DIVERGED.format(1), ""])
    some[1].update(status="finished", objective=0.25, metrics={"train_MSE": 0.25})
    result = summary.write_summary(tmp_path, some, spec(), ["model.hidden"])
    assert result["failure_note"] == "" and result["best"]["key"] == "k1"


@pytest.mark.parametrize("values", [[], [math.nan], [-1.0, 0.0], [math.inf, -math.inf]])
def test_the_census_plot_draws_empty_and_non_positive_values(tmp_path, values):
    groups = [{"label": "a", "share_best": 0.0, "share_solved": math.nan, "values": values},
              {"label": "b", "share_best": 0.0, "share_solved": math.nan, "values": []}]
    assert plots.census(groups, tmp_path / "census.png").stat().st_size > 0


@pytest.mark.parametrize("objectives", [[], [math.nan, math.nan], [0.0, -2.0]])
def test_the_axis_plot_draws_no_points_and_non_positive_values(tmp_path, objectives):
    pts = [{"axes": {"model.rate": 1e-3 * 10 ** i}, "objective": o} for i, o in enumerate(objectives)]
    assert plots.axis_vs_objective(pts, "model.rate", "train_MSE", tmp_path / "axis.png").stat().st_size > 0
