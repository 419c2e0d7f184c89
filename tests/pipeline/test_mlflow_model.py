"""The sweepnet pyfunc flavour (pipeline.mlflow_model): saved as data files, loaded by MLflow through the
loader module, predicting exactly what DeepLearningModel predicts; bad input is a 400-class MlflowException."""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from pipeline import mlflow_model
from pipeline.datasets import load_data, preprocess
from pipeline.model import DeepLearningModel
from pipeline.sweep.runner import model_file_extra
from pipeline.train import run_training

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def _saved(tmp_path, config, name="m"):
    """Train ``config``, save its model file as a sweep trial does, and the MLflow model beside it."""
    data = load_data(config["data"])
    result = run_training(config, data=data)
    result.input_rows = data.X_train[:3].copy()
    weights = result.model.save(tmp_path / f"{name}.npz", extra=model_file_extra(result))
    return result, weights, mlflow_model.save(tmp_path / name, weights)


def test_classifier_with_preprocessing_predicts_probabilities_bit_for_bit(tmp_path):
    config = {"name": "d", "data": {"source": "digits", "preprocessing": ["standardize"], "limit": 300},
              "model": {"hidden": [6], "epochs": 2, "seed": 3}}
    result, weights, folder = _saved(tmp_path, config)
    loaded = mlflow.pyfunc.load_model(str(folder))
    raw = load_data({**config["data"], "preprocessing": []}).X_train[:25]  # rows as the source holds them
    features = loaded.metadata.get_input_schema().input_names()
    out = loaded.predict(pd.DataFrame(raw, columns=features))
    model = DeepLearningModel.load(weights)
    steps = mlflow_model.fitted_steps(result.data_meta)
    expected = model.predict_proba(preprocess.apply_all(steps, raw))
    assert np.array_equal(out.to_numpy(), expected)  # bit for bit
    assert list(out.columns) == [str(c) for c in range(10)]  # float labels 0.0..9.0 named 0..9
    assert loaded.metadata.flavors["sweepnet"]["prediction"] == "class probabilities"
    assert loaded.metadata.get_output_schema().input_names() == list(out.columns)
    # the input example is training rows mapped back through the fitted standardize step
    example = json.loads((folder / "input_example.json").read_text())
    assert np.allclose(np.asarray(example["data"]), raw[:3], atol=1e-12)


def test_regression_and_autoencoder_outputs(tmp_path):
    xor = {"name": "x", "data": {"source": "xor"},
           "model": {"activation": "Tanh", "hidden": [2], "epochs": 50, "distribution": "gaussian", "seed": 1}}
    _, weights, folder = _saved(tmp_path, xor, "reg")
    out = mlflow.pyfunc.load_model(str(folder)).predict(pd.DataFrame(XOR_X, columns=["x1", "x2"]))
    assert list(out.columns) == ["prediction"]
    assert np.array_equal(out["prediction"].to_numpy(), DeepLearningModel.load(weights).predict(XOR_X))

    ae = {"name": "a", "data": {"source": "xor"},
          "model": {"activation": "Tanh", "hidden": [1], "epochs": 20, "autoencoder": True, "seed": 1}}
    _, weights, folder = _saved(tmp_path, ae, "ae")
    loaded = mlflow.pyfunc.load_model(str(folder))
    out = loaded.predict(pd.DataFrame(XOR_X, columns=["x1", "x2"]))
    assert loaded.metadata.flavors["sweepnet"]["prediction"] == "reconstruction"
    assert list(out.columns) == ["x1", "x2"]
    assert np.array_equal(out.to_numpy(), DeepLearningModel.load(weights).predict(XOR_X))


def test_model_folder_holds_data_files_and_no_pickle(tmp_path):
    xor = {"name": "x", "data": {"source": "xor"}, "model": {"hidden": [2], "epochs": 5, "distribution": "bernoulli"}}
    _, _, folder = _saved(tmp_path, xor)
    data = folder / "data" / "sweepnet"
    assert sorted(p.name for p in data.iterdir()) == ["preprocessing.json", "spec.json", "weights.npz"]
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pickle"))
    flavor = mlflow.pyfunc.load_model(str(folder)).metadata.flavors["python_function"]
    assert flavor["loader_module"] == "pipeline.mlflow_model"
    requirements = (folder / "requirements.txt").read_text()
    assert "numba==" in requirements and "mlflow==" in requirements


@pytest.mark.parametrize("frame, message", [
    (lambda X: X[["x1"]], "missing inputs ['x2']"),
    (lambda X: X.assign(x2=[0.0, np.nan, 1.0, 1.0]), "1 NaN/inf value(s), first at row 1, column 'x2'"),
    (lambda X: X.assign(x1=["a", "b", "c", "d"]), "x1"),
])
def test_bad_input_is_an_invalid_parameter_error_naming_the_problem(tmp_path, frame, message):
    xor = {"name": "x", "data": {"source": "xor"}, "model": {"hidden": [2], "epochs": 5, "distribution": "bernoulli"}}
    _, _, folder = _saved(tmp_path, xor)
    loaded = mlflow.pyfunc.load_model(str(folder))
    with pytest.raises(MlflowException) as info:
        loaded.predict(frame(pd.DataFrame(XOR_X, columns=["x1", "x2"])))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE" and info.value.get_http_status_code() == 400
    assert message in info.value.message


def test_the_predictor_checks_width_and_names_without_mlflow(tmp_path):
    xor = {"name": "x", "data": {"source": "xor"}, "model": {"hidden": [2], "epochs": 5, "distribution": "bernoulli"}}
    _, weights, _ = _saved(tmp_path, xor)
    predictor = mlflow_model.SweepnetPyfunc.from_weights(weights)
    assert predictor.features == ["x1", "x2"]
    with pytest.raises(MlflowException, match=r"shape \(4, 3\), so 3 column\(s\); the model takes 2 feature"):
        predictor.predict(np.zeros((4, 3)))
    with pytest.raises(MlflowException, match=r"missing column\(s\) \['x2'\]"):
        predictor.predict(pd.DataFrame({"x1": [0.0], "y": [1.0]}))
    # unnamed columns of the right width are taken in order (JSON "inputs" / dataframe_split without columns)
    same = predictor.predict(pd.DataFrame(XOR_X)).to_numpy()
    assert np.array_equal(same, predictor.predict(pd.DataFrame(XOR_X, columns=["x1", "x2"])).to_numpy())
