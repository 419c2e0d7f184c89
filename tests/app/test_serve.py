"""`sweepnet serve models:/NAME@champion` (mlflow models serve --env-manager local) as a real server process on
127.0.0.1 answering real HTTP /invocations requests; bad rows get 400 with a message, never 500."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from app.services.procs import free_port, http_status, spawn, stop, wait_until
from pipeline import tracking
from pipeline.model import DeepLearningModel
from pipeline.sweep import collect, driver, runner

ROOT = Path(__file__).resolve().parents[2]
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [3], "epochs": 150, "distribution": "bernoulli",
                 "optimizer": "sgd", "rate": 0.1}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A one-trial sweep ``serve-xor`` with its champion, served by `python -m app serve` (stopped by PID)."""
    store = tmp_path_factory.mktemp("servestore")
    spec = {"name": "serve-xor", "base": XOR, "seeds": [1], "objective": {"metric": "train_logloss"}}
    plan = driver.prepare(spec, store, n_workers=1, check_gradient=False)
    chunks = driver.pending_chunks(plan)
    col = collect.Collector(plan, chunks, every=0)
    for c in chunks:
        col.add(runner.run_chunk(c, plan.ctx, plan.options))
    best = collect.finish(plan, col.rows())["best"]["run_id"]
    weights = tracking.client(plan.ctx.tracking_uri).download_artifacts(best, "model/weights.npz", str(store))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(ROOT)  # the server imports pipeline.mlflow_model from this checkout
    rec = spawn(store / "state", "model-server", "serve",
                [sys.executable, "-m", "app", "serve", "models:/serve-xor@champion", "--store", str(store),
                 "--port", str(port)], env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_status(f"{url}/ping", timeout=2) == 200, [rec], "the model server", timeout=240)
        yield url, DeepLearningModel.load(weights)
    finally:
        stop(rec, timeout=10)


def invoke(url: str, body: dict | str) -> tuple[int, dict]:
    data = (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_champion_answers_invocations_with_the_models_probabilities(served):
    url, model = served
    X = [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    for body in ({"dataframe_split": {"columns": ["x1", "x2"], "data": X}},
                 {"dataframe_records": [{"x1": a, "x2": b} for a, b in X]},
                 {"inputs": {"x1": [r[0] for r in X], "x2": [r[1] for r in X]}}):
        status, answer = invoke(url, body)
        assert status == 200, answer
        got = np.array([[row["-1"], row["1"]] for row in answer["predictions"]])
        assert np.array_equal(got, model.predict_proba(np.array(X)))  # JSON floats round-trip exactly


@pytest.mark.parametrize("body, words", [
    ({"dataframe_split": {"columns": ["x1"], "data": [[0.0]]}}, "missing inputs ['x2']"),
    ({"dataframe_split": {"data": [[0.0, 1.0, 1.0]]}}, "missing inputs ['x1', 'x2']. Note that there were extra "
                                                      "inputs: [0, 1, 2]"),
    ({"inputs": [[0.0, 1.0, 1.0]]}, "missing inputs ['x1', 'x2']"),
    ({"dataframe_split": {"columns": ["x1", "x2"], "data": [[0.0, None]]}},
     "input holds 1 NaN/inf value(s), first at row 0, column 'x2'"),
    ('{"dataframe_split": {"columns": ["x1", "x2"], "data": [[NaN, 1.0]]}}', "first at row 0, column 'x1'"),
    ({"dataframe_records": [{"x1": 0.0, "x2": "a"}]}, "Failed to convert column x2 to type 'float64'"),
])
def test_bad_rows_get_400_with_a_message_naming_the_problem(served, body, words):
    url, _ = served
    status, answer = invoke(url, body)
    assert status == 400
    assert words in answer["message"]
