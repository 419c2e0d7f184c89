"""`sweepnet predict` on a model file, a runs:/ URI and a models:/NAME@champion URI (a real sweep on a sqlite
store), on CSV and Parquet, through the real CLI entry point; clear errors for bad data."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from app.cli import main
from pipeline import tracking
from pipeline.model import DeepLearningModel
from pipeline.sweep import collect, driver, runner

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [3], "epochs": 150, "distribution": "bernoulli",
                 "optimizer": "sgd", "rate": 0.1}}
ROWS = pd.DataFrame({"x2": [0.0, 1.0, 0.0, 1.0], "x1": [0.0, 0.0, 1.0, 1.0], "note": list("abcd")})


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A finished two-trial sweep ``predict-xor`` with its champion registered; (store, best run id, weights)."""
    store = tmp_path_factory.mktemp("predictstore")
    spec = {"name": "predict-xor", "base": XOR, "seeds": [1, 2], "chunk_size": 2,
            "objective": {"metric": "train_logloss", "direction": "minimize"}}
    plan = driver.prepare(spec, store, n_workers=1, check_gradient=False)
    chunks = driver.pending_chunks(plan)
    col = collect.Collector(plan, chunks, every=0)
    for c in chunks:
        col.add(runner.run_chunk(c, plan.ctx, plan.options))
    res = collect.finish(plan, col.rows())
    run_id = res["best"]["run_id"]
    weights = tracking.client(plan.ctx.tracking_uri).download_artifacts(run_id, "model/weights.npz",
                                                                       str(tmp_path_factory.mktemp("w")))
    return store, run_id, weights


@pytest.fixture(autouse=True)
def no_global_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mlflow.set_tracking_uri(None)  # `predict` points MLflow at the store for runs:/ and models:/ URIs


def expected(weights):
    model = DeepLearningModel.load(weights)
    X = ROWS[["x1", "x2"]].to_numpy()
    return model.predict_proba(X), model.predict(X)


@pytest.mark.parametrize("kind", ["file", "runs", "models"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_writes_probabilities_and_labels_for_every_reference(sweep_store, tmp_path, capsys, kind, suffix):
    store, run_id, weights = sweep_store
    reference = {"file": weights, "runs": f"runs:/{run_id}/model", "models": "models:/predict-xor@champion"}[kind]
    data = tmp_path / f"rows{suffix}"
    ROWS.to_csv(data, index=False) if suffix == ".csv" else ROWS.to_parquet(data, index=False)
    out = tmp_path / f"pred{suffix}"
    assert main(["predict", reference, str(data), "--out", str(out), "--store", str(store)]) == 0
    assert "4 predictions (classification) written to" in capsys.readouterr().out
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    proba, labels = expected(weights)
    assert list(got.columns) == ["predict", "-1", "1"]
    assert np.array_equal(got[["-1", "1"]].to_numpy(), proba)  # CSV keeps float64 bits (repr round trip)
    assert got["predict"].astype(int).tolist() == labels.astype(int).tolist()


def test_predict_takes_a_model_file_from_sweepnet_train(tmp_path, capsys):
    model = tmp_path / "xor.npz"
    xor = Path(__file__).resolve().parents[2] / "examples" / "xor.yaml"
    assert main(["train", str(xor), "--quiet", "--set", "model.epochs=30", "--out", str(model)]) == 0
    data = tmp_path / "rows.csv"
    ROWS.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 0
    assert "4 predictions (regression) written to" in capsys.readouterr().out
    got = pd.read_csv(out)
    assert list(got.columns) == ["prediction"]
    assert np.array_equal(got["prediction"].to_numpy(), DeepLearningModel.load(model).predict(ROWS[["x1", "x2"]]))


def test_predict_prints_a_table_without_out(sweep_store, tmp_path, capsys):
    store, _, _ = sweep_store
    data = tmp_path / "rows.csv"
    ROWS.to_csv(data, index=False)
    assert main(["predict", "models:/predict-xor@champion", str(data), "--store", str(store), "--rows", "2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["predict", "-1", "1"] and len(text) == 4
    assert text[-1] == "... 2 more rows; --out FILE writes them all"


def test_predict_names_missing_columns_and_bad_values(sweep_store, tmp_path, capsys):
    store, _, weights = sweep_store
    narrow = tmp_path / "narrow.csv"
    pd.DataFrame({"x1": [0.0], "other": [1.0], "z": [2.0]}).to_csv(narrow, index=False)
    assert main(["predict", weights, str(narrow)]) == 1
    err = capsys.readouterr().err
    assert "is missing the model's feature column(s) x2; it has 3 column(s) but the model takes 2" in err
    assert "Its columns: x1, other, z" in err
    holes = tmp_path / "holes.csv"
    pd.DataFrame({"x1": [0.0, None], "x2": [1.0, 1.0]}).to_csv(holes, index=False)
    assert main(["predict", "models:/predict-xor@champion", str(holes), "--store", str(store)]) == 1
    assert "1 NaN/inf value(s), first at row 1, column 'x1'" in capsys.readouterr().err
    assert main(["predict", "models:/predict-xor@nosuch", str(holes), "--store", str(store)]) == 1
    assert "cannot load model 'models:/predict-xor@nosuch'" in capsys.readouterr().err
    assert main(["predict", weights, str(tmp_path / "rows.txt")]) == 1
    assert "does not exist" in capsys.readouterr().err
