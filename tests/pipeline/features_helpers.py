"""Shared pieces of the pipeline.features tests: a small sparse autoencoder and a features config."""

import pytest

from pipeline.datasets import load_data, preprocess
from pipeline.model import DeepLearningModel

AE = {"autoencoder": True, "activation": "Sigmoid", "output_activation": "Sigmoid", "hidden": [6],
      "optimizer": "lbfgs", "epochs": 15, "l2": 3e-3, "sparsity_beta": 3, "average_activation": 0.1,
      "dtype": "float64", "seed": 3}


@pytest.fixture(scope="module")
def digits():
    data = load_data({"source": "digits", "limit": 120})
    return data.X_train.reshape(-1, 8, 8, 1)


def trained(X, steps, standardize):
    fitted, Xp = preprocess.fit_apply_all(steps, X)
    model = DeepLearningModel({**AE, "standardize": standardize}).fit(Xp)
    return model, [preprocess.to_jsonable(p) for p in fitted], Xp


def features_config(tmp_path, **extra):
    cfg = {"name": "t", "images": {"source": "digits", "limit": 300, "test_fraction": 0.5},
           "autoencoder": {"train": {"data": {"source": "digits", "limit": 200},
                                     "patches": {"size": 4, "count": 800, "seed": 1},
                                     "preprocessing": [{"name": "zca", "epsilon": 0.1}],
                                     "model": {**AE, "hidden": [8]}}},
           "conv": {"pool": 2}, "classifier": {"epochs": 30}, "shard_rows": 64,
           "out": str(tmp_path / "out")}
    cfg.update(extra)
    return cfg
