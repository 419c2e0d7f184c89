"""Tracking URIs across the cluster boundary: workers log through their own ``MLFLOW_TRACKING_URI``, and
``user:password@`` never reaches params, tags, the sweep context or its summary. Real MLflow server, no mocks."""

from __future__ import annotations

import dataclasses
import os

import pytest

from app.services import free_port
from pipeline import tracking
from pipeline.sweep import driver, runner
from tests.services import mlflow_server_uri, sweepnet_service_pool  # noqa: F401  (session fixtures)

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 50, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}


def _spec(name: str) -> dict:
    return {"name": name, "base": XOR, "seeds": [1, 2], "chunk_size": 2,
            "objective": {"metric": "train_MSE", "direction": "minimize"}}


@pytest.mark.services
def test_worker_logs_through_its_own_tracking_uri_not_the_drivers(mlflow_server_uri, monkeypatch, tmp_path):
    # The driver reached the server under a name the worker cannot resolve or reach (a laptop's
    # port-forward, say): the worker's own MLFLOW_TRACKING_URI points at the same server.
    plan = driver.prepare(_spec(f"own-uri-{tmp_path.name}"), tmp_path, tracking_uri=mlflow_server_uri,
                          check_gradient=False)
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens: the driver's view only
    driver_ctx = dataclasses.replace(plan.ctx, tracking_uri=unreachable)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server_uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail in seconds, not minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    outcomes = runner.run_chunk(plan.trials, driver_ctx, plan.options)
    assert [o.status for o in outcomes] == ["finished", "finished"]
    kids = tracking.client(mlflow_server_uri).search_runs(
        [plan.ctx.experiment_id], filter_string=f"tags.`{tracking.PARENT}` = '{plan.ctx.parent_run_id}'")
    assert sorted(r.data.tags[tracking.TAG_KEY] for r in kids) == sorted(t.key for t in plan.trials)
    assert {r.info.run_id for r in kids} == {o.run_id for o in outcomes}


def test_a_worker_without_its_own_uri_uses_the_drivers(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ctx = tracking.TrackingContext(f"sqlite:///{tmp_path / 'm.db'}", "1", "p")
    assert tracking.uri_for(ctx) == ctx.tracking_uri


def test_a_worker_that_inherited_the_drivers_env_keeps_the_drivers_explicit_uri(tmp_path, monkeypatch):
    # LocalCluster workers inherit the driver's environment; the driver chose another store explicitly.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    ctx = tracking.TrackingContext(f"sqlite:///{tmp_path / 'm.db'}", "1", "p",
                                   driver_env_uri="http://mlflow.example:5000")
    assert tracking.uri_for(ctx) == ctx.tracking_uri


@pytest.mark.parametrize("uri, clean", [
    ("http://pipeline:s3cr3t@mlflow.example:5000", "http://mlflow.example:5000"),
    ("postgresql+psycopg2://mlflow:pw@127.0.0.1:5432/mlflow", "postgresql+psycopg2://127.0.0.1:5432/mlflow"),
    ("https://token@host/path?q=1", "https://host/path?q=1"),
    ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_redact_uri_strips_userinfo_only(uri, clean):
    assert tracking.redact_uri(uri) == clean
    assert tracking.redact_text(f"store at {uri}, see logs") == f"store at {clean}, see logs"


def test_credentials_in_the_uri_move_to_the_environment(monkeypatch):
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    env = {"MLFLOW_TRACKING_URI": "http://pipeline:p%40ss@mlflow.example:5000"}
    tracking.credentials_to_env(env)
    assert env == {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000", "MLFLOW_TRACKING_USERNAME": "pipeline",
                   "MLFLOW_TRACKING_PASSWORD": "p@ss"}


def test_userinfo_never_reaches_params_tags_or_the_context(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    secret = "hunter2-secret"
    source = f"s3://key:{secret}@bucket/xor.parquet"
    ctx = tracking.open_sweep(f"sqlite:///{tmp_path / 'm.db'}", "redact", "s", "k", {"data": {"path": source}})
    run_id = tracking.log_child(ctx, "k1", "t", {"data": {"path": source}}, {"sweepnet.source": source},
                                [{"epoch": 1, "loss": 0.5}], {"loss": 0.5})
    tracking.log_parent(ctx, {"n": 1.0}, {"sweepnet.note": f"from {source}"}, None)
    c = tracking.client(ctx.tracking_uri)
    runs = [c.get_run(ctx.parent_run_id), c.get_run(run_id)]
    texts = [str(v) for r in runs for v in (*r.data.params.values(), *r.data.tags.values())]
    assert "s3://bucket/xor.parquet" in texts and "from s3://bucket/xor.parquet" in texts
    assert not any(secret in t for t in texts)


@pytest.mark.services
def test_a_tracking_uri_with_userinfo_is_stored_clean_in_the_context(mlflow_server_uri, monkeypatch, tmp_path):
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    with_user = mlflow_server_uri.replace("http://", "http://pipeline:hunter2-secret@")
    ctx = tracking.open_sweep(with_user, f"userinfo-{tmp_path.name}", "s", "k", {})
    assert ctx.tracking_uri == mlflow_server_uri and "hunter2" not in repr(ctx)
    assert tracking.run_status(ctx, ctx.parent_run_id) == "RUNNING"


def test_an_unreachable_server_is_named_without_its_credentials():
    uri = f"http://pipeline:hunter2-secret@127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError) as err:
        tracking.check_reachable(uri, timeout=5)
    assert "127.0.0.1" in str(err.value) and "hunter2" not in str(err.value)
