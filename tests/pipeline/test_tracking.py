"""The MLflow adapter against a real local sqlite store (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pipeline import tracking


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating one runs ~30 schema migrations: seconds)."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def ctx(store, request):
    uri = f"sqlite:///{store / 'mlflow.db'}"
    exp = request.node.name  # one experiment per test keeps them independent
    return tracking.open_sweep(uri, exp, "sweep", "sk1", {"sweep": {"seeds": 3}, "base": {"model": {"l1": 0}}},
                               artifact_root=store / "artifacts")


def test_parent_is_created_once_and_reopened(ctx, request):
    again = tracking.open_sweep(ctx.tracking_uri, request.node.name, "sweep", "sk1", {})
    assert again == ctx
    run = tracking.client(ctx.tracking_uri).get_run(ctx.parent_run_id)
    assert run.data.params["sweep.seeds"] == "3" and run.data.params["base.model.l1"] == "0"
    other = tracking.open_sweep(ctx.tracking_uri, request.node.name, "sweep", "sk2", {})
    assert other.parent_run_id != ctx.parent_run_id


def test_child_gets_parent_tag_params_batched_metrics_and_artifacts(ctx, tmp_path):
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "config.yaml").write_text("a: 1\n")
    history = [{"epoch": e, "training_objective": 1.0 / e} for e in (1, 2, 3)]
    run_id = tracking.log_child(ctx, "k1", "t0", {"model": {"hidden": [2]}}, {"sweepnet.axis.model.hidden": [2]},
                                history, {"training_objective": 1 / 3, "train_MSE": 0.25}, tmp_path / "art")
    c = tracking.client(ctx.tracking_uri)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.PARENT] == ctx.parent_run_id
    assert run.data.tags[tracking.TAG_KEY] == "k1"
    assert run.data.params["model.hidden"] == "[2]"
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "training_objective")] == [
        (1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert run.data.metrics["train_MSE"] == 0.25
    assert [a.path for a in c.list_artifacts(run_id)] == ["config.yaml"]
    assert tracking.finished_keys(ctx) == {"k1"}


def test_large_params_and_histories_are_split_within_mlflow_batch_limits(ctx):
    params = {"grid": {f"p{i:03d}": i for i in range(250)}}
    history = [{"epoch": e, "training_objective": 1.0 / e, "training_loss": 2.0 / e, "training_MAE": 0.1}
               for e in range(1, 601)]
    run_id = tracking.log_child(ctx, "big", "big", params, {}, history, {"train_MSE": 0.5},
                                curve_keys={"training_objective", "training_loss"})
    c = tracking.client(ctx.tracking_uri)
    run = c.get_run(run_id)
    assert len(run.data.params) == 250 and run.data.params["grid.p249"] == "249"
    assert len(c.get_metric_history(run_id, "training_loss")) == 600
    assert len(c.get_metric_history(run_id, "training_objective")) == 600
    assert c.get_metric_history(run_id, "training_MAE") == []  # not a curve key
    assert run.data.metrics["train_MSE"] == 0.5


def test_a_finished_key_is_never_logged_twice(ctx):
    first = tracking.log_child(ctx, "k1", "t0", {}, {}, [], {"m": 1.0})
    second = tracking.log_child(ctx, "k1", "t0", {}, {}, [], {"m": 2.0})
    assert first and second is None
    assert len(tracking.children(ctx, status="FINISHED", key="k1")) == 1


def test_failure_is_a_failed_child_with_the_error(ctx):
    run_id = tracking.log_failure(ctx, "k2", "t1", {}, {}, "FloatingPointError: diverged")
    c = tracking.client(ctx.tracking_uri)
    run = c.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags[tracking.TAG_ERROR]
    assert tracking.read_artifact_text(ctx, run_id, "error.txt") == "FloatingPointError: diverged"
    assert tracking.finished_keys(ctx) == set()


def test_child_left_running_by_a_killed_process_is_marked_killed(ctx):
    # A real process opens a child and is killed with SIGKILL before it can close it.
    code = textwrap.dedent(f"""
        import os, signal
        from pipeline import tracking
        c = tracking.client({ctx.tracking_uri!r})
        c.create_run({ctx.experiment_id!r}, tags={{"mlflow.parentRunId": {ctx.parent_run_id!r},
                     "sweepnet.trial_key": "k3"}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert len(tracking.children(ctx, status="RUNNING")) == 1
    assert tracking.reconcile_stale(ctx) == 1
    assert tracking.children(ctx, status="RUNNING") == []
    assert [r.info.status for r in tracking.children(ctx, key="k3")] == ["KILLED"]


def test_opening_a_sweep_puts_the_sqlite_store_in_wal_mode(ctx, store):
    import sqlite3

    con = sqlite3.connect(store / "mlflow.db")
    try:
        assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    assert tracking.use_wal("http://127.0.0.1:5000") is False
