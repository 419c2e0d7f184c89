"""app.sweeps and app.commands.sweep: the parts of `sweepnet sweep/deploy` that need no servers."""

import json
import math

import pytest

from app.cli import main as sweepnet
from app.sweeps import print_summary, summary_to_json


def test_summary_json_turns_non_finite_numbers_into_null_and_keeps_the_best_trial_short():
    result = {"trials": 2, "trials_failed": 1, "timing": {"prepare_s": 1.5},
              "best": {"key": "k1", "objective": math.nan, "seed": 3, "metrics": {"train_MSE": 0.1}},
              "worst_objective": math.inf}
    data = json.loads(summary_to_json(result))
    assert data["worst_objective"] is None
    assert data["best"] == {"key": "k1", "objective": None, "seed": 3}  # the metrics dict stays in MLflow
    assert data["timing"] == {"prepare_s": 1.5}


def test_print_summary_shows_the_leaderboard_head_and_the_counts(tmp_path, capsys):
    (tmp_path / "leaderboard.csv").write_text(
        "rank,key,run_id,model.hidden,rung,train_MSE,train_logloss,epochs,extra_metric,status\n"
        "1,k1,r1,[2],0,0.01,0.1,10,5,FINISHED\n"
        "2,k2,r2,[3],0,0.02,0.2,10,6,FINISHED\n")
    print_summary({"summary_dir": str(tmp_path), "trials": 2, "trials_finished": 2, "trials_failed": 0}, top=2)
    out = capsys.readouterr().out
    # run ids, keys and metrics past the third are hidden, and so are columns that never vary (epochs)
    assert "| rank | model.hidden | train_MSE | train_logloss | status |" in out
    assert "| 2 | [3] | 0.02 | 0.2 | FINISHED |" in out
    assert "2 trials: 2 finished, 0 failed, 0 skipped, 0 missing." in out
    print_summary({"summary_dir": str(tmp_path), "trials": 2, "trials_finished": 2, "trials_failed": 0}, top=1)
    assert "| 2 |" not in capsys.readouterr().out  # --top 1 prints one row
    print_summary({"summary_dir": str(tmp_path), "trials": 2, "trials_finished": 2, "trials_failed": 0,
                   "champion": "models:/s@champion"}, top=1)
    assert "best model: models:/s@champion (`sweepnet predict models:/s@champion ROWS.csv`" in \
        capsys.readouterr().out


def test_only_a_refusal_before_fan_out_is_reported_as_refused(monkeypatch, tmp_path, capsys):
    # the flow itself is exercised end to end in tests/flows; here only how run_one names what it raised
    import flows
    from app.sweeps import EXIT_ERROR, EXIT_REFUSED, run_one
    from pipeline.sweep.driver import SweepRefused

    def raising(err):
        def run_sweep(*args, **kwargs):
            raise err
        return run_sweep

    monkeypatch.setattr(flows, "run_sweep", raising(SweepRefused("model.rate = -1 must be > 0")))
    assert run_one("s.yaml", tmp_path) == (EXIT_REFUSED, None)
    assert "sweep refused: model.rate = -1 must be > 0" in capsys.readouterr().err
    # a ValueError after fan-out (e.g. while summarising) is a failure of the sweep, not a refusal
    monkeypatch.setattr(flows, "run_sweep", raising(ValueError("Data cannot be log-scaled")))
    assert run_one("s.yaml", tmp_path) == (EXIT_ERROR, None)
    err = capsys.readouterr().err
    assert "sweep failed: ValueError: Data cannot be log-scaled" in err and "refused" not in err


def test_a_sweep_with_no_finished_trial_exits_3_and_prints_why(monkeypatch, tmp_path, capsys):
    import flows
    from app.sweeps import EXIT_TRIALS_FAILED, print_summary, run_one

    note = "no trial produced train_MSE: 4 of 4 trials skipped; commonest error (4 of 4): max_runtime_secs"
    result = {"summary_dir": str(tmp_path), "trials": 4, "trials_finished": 0, "trials_failed": 0,
              "trials_skipped": 4, "trials_missing": 0, "failure_note": note}
    monkeypatch.setattr(flows, "run_sweep", lambda *a, **k: result)
    assert run_one("s.yaml", tmp_path) == (EXIT_TRIALS_FAILED, result)  # all skipped: no result, exit 3
    (tmp_path / "leaderboard.csv").write_text("rank,model.hidden,rung,train_MSE,status,run_id,key\n"
                                              "1,[2],0,nan,skipped,,k1\n")
    print_summary(result, top=3)
    assert note in capsys.readouterr().out
    print_summary({**result, "selection_note": "selected on the test set (select_on_test: true): ..."}, top=3)
    assert "selected on the test set (select_on_test: true)" in capsys.readouterr().out


def test_deploy_without_a_prefect_server_says_how_to_start_one(monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert sweepnet(["deploy", "examples/sweeps/xor_census.yaml", "--cron", "0 3 * * *"]) == 1
    err = capsys.readouterr().err
    assert "schedules need a real Prefect server" in err and "sweepnet services up --only prefect" in err


@pytest.mark.parametrize("hook", ["--summary-json", "--train-fn"])
def test_test_hooks_stay_out_of_the_help(hook, capsys):
    with pytest.raises(SystemExit):
        sweepnet(["sweep", "--help"])
    assert hook not in capsys.readouterr().out


def test_the_sweep_command_closes_with_each_experiments_training_view_link(tmp_path):
    from app.sweeps import open_ui_lines
    from pipeline import ui_links

    sqlite = {"tracking_uri": "sqlite:///x.db", "experiment_url": ui_links.experiment_url(ui_links.DEFAULT_UI, "4")}
    assert open_ui_lines(tmp_path, [sqlite]).splitlines()[1:] == [
        f"Open the MLflow UI:  sweepnet ui --store {tmp_path}   then",
        "  http://127.0.0.1:5000/#/experiments/4?workflowType=machine_learning"]
    served = {"tracking_uri": "http://mlflow:5000", "experiment_url": "http://mlflow:5000/#/experiments/2?x"}
    assert open_ui_lines(tmp_path, [served]).splitlines()[1:] == ["Open the MLflow UI:",
                                                                   "  " + served["experiment_url"]]
    assert "sweepnet ui --store" in open_ui_lines(tmp_path, [])  # every sweep refused: still how to open the UI
