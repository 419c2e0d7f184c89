"""The lab's autoencoder examples, tested with a number, not only a picture.

The number is :func:`pipeline.pictures.localization_score`: the share of
first-layer filters whose energy is concentrated in a small region and one
orientation (edge detectors), for trained weights against the same measure at
initialisation.
"""

from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from pipeline.config import load_config
from pipeline.datasets import load_data
from pipeline.model import DeepLearningModel
from pipeline.pictures import localization_score

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _initial_score(cfg, data):
    model = DeepLearningModel(cfg.model).initialize(data.X_train)
    return localization_score(model.layer_params(0)[0], data.meta["image_shape"])


def _train_and_score(name, tmp_path, capsys):
    out = tmp_path / f"{name}.npz"
    assert main(["train", str(EXAMPLES / f"{name}.yaml"), "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.with_suffix(".png").stat().st_size > 1000
    model = DeepLearningModel.load(out)
    cfg = load_config(EXAMPLES / f"{name}.yaml")
    data = load_data(cfg.data)
    trained = localization_score(model.layer_params(0)[0], data.meta["image_shape"])
    return trained, _initial_score(cfg, data), text


def test_sparse_autoencoder_example_learns_edge_detectors(tmp_path, capsys):
    trained, initial, text = _train_and_score("sparse_autoencoder", tmp_path, capsys)
    assert "feature picture:" in text
    assert initial <= 0.05
    assert trained >= 0.5


def test_sparse_autoencoder_hidden_units_are_sparse(tmp_path):
    cfg = load_config(EXAMPLES / "sparse_autoencoder.yaml", {"model.epochs": 100})
    data = load_data(cfg.data)
    model = DeepLearningModel(cfg.model).fit(data.X_train)
    rho_hat = model.deepfeatures(data.X_train).mean(axis=0)
    # with rho = 0.01 and beta = 3 the mean activations are pulled towards 0.01
    assert np.median(rho_hat) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed_edges", "mnist_strokes", "linear_decoder"])
def test_larger_autoencoder_examples_learn_localized_features(name, tmp_path, capsys):
    trained, initial, _ = _train_and_score(name, tmp_path, capsys)
    assert trained > initial + 0.2
