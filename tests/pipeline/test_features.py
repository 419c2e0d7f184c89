import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.datasets import load_data, preprocess
from pipeline.features import (ConvSpec, extract_features, fold_autoencoder, load_autoencoder,
                               load_features_config, photo_crops, PhotoCrops, read_features,
                               run_features, write_features, AutoencoderSource)
from pipeline.model import DeepLearningModel

AE = {"autoencoder": True, "activation": "Sigmoid", "output_activation": "Sigmoid", "hidden": [6],
      "optimizer": "lbfgs", "epochs": 15, "l2": 3e-3, "sparsity_beta": 3, "average_activation": 0.1,
      "dtype": "float64", "seed": 3}


@pytest.fixture(scope="module")
def digits():
    data = load_data({"source": "digits", "limit": 120})
    return data.X_train.reshape(-1, 8, 8, 1)


def _trained(X, steps, standardize):
    fitted, Xp = preprocess.fit_apply_all(steps, X)
    model = DeepLearningModel({**AE, "standardize": standardize}).fit(Xp)
    return model, [preprocess.to_jsonable(p) for p in fitted], Xp


@pytest.mark.parametrize("steps,standardize", [([], False), ([{"name": "zca", "epsilon": 0.1}], True),
                                               (["standardize"], True)])
def test_whole_image_features_equal_deepfeatures(digits, steps, standardize):
    # self-taught case: a patch as large as the image, pool 1 -> the hidden layer itself
    X = digits.reshape(len(digits), -1)
    model, fitted, Xp = _trained(X, steps, standardize)
    W, b, act = fold_autoencoder(model, fitted, [8, 8, 1])
    before = digits.copy()
    got = extract_features(digits, W, b, act, ConvSpec(pool=1))
    np.testing.assert_array_equal(digits, before)
    np.testing.assert_allclose(got, model.deepfeatures(Xp), atol=2e-5)


def test_conv_windows_equal_deepfeatures_of_patches(digits):
    patches = np.lib.stride_tricks.sliding_window_view(digits[:3], (4, 4), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 16)  # (image, i, j) rows
    model, fitted, _ = _trained(patches, [{"name": "zca", "epsilon": 0.01}], True)
    W, b, act = fold_autoencoder(model, fitted, [4, 4, 1])
    got = extract_features(digits[:3], W, b, act, ConvSpec(pool=1))  # (3, K * 5 * 5)
    want = model.deepfeatures(preprocess.apply_all(fitted, patches)).reshape(3, 5, 5, 6)
    np.testing.assert_allclose(got.reshape(3, 6, 5, 5), want.transpose(0, 3, 1, 2), atol=2e-5)


def test_parquet_round_trip_one_row_group_per_shard(tmp_path):
    rng = np.random.default_rng(0)
    shards = [(rng.random((4, 9), dtype=np.float32), np.arange(4.0), "train"),
              (rng.random((3, 9), dtype=np.float32), np.arange(3.0), "test"),
              (rng.random((2, 9), dtype=np.float32), np.arange(2.0), "test")]
    path = write_features(tmp_path / "f.parquet", iter(shards), {"name": "t"})
    assert pq.ParquetFile(path).num_row_groups == 3
    assert json.loads(pq.read_schema(path).metadata[b"sweepnet"])["name"] == "t"
    back = read_features(path)
    np.testing.assert_array_equal(back["train"][0], shards[0][0])
    np.testing.assert_array_equal(back["test"][0], np.concatenate([shards[1][0], shards[2][0]]))
    np.testing.assert_array_equal(back["test"][1], [0, 1, 2, 0, 1])


def _config(tmp_path, **extra):
    cfg = {"name": "t", "images": {"source": "digits", "limit": 300, "test_fraction": 0.5},
           "autoencoder": {"train": {"data": {"source": "digits", "limit": 200},
                                     "patches": {"size": 4, "count": 800, "seed": 1},
                                     "preprocessing": [{"name": "zca", "epsilon": 0.1}],
                                     "model": {**AE, "hidden": [8]}}},
           "conv": {"pool": 2}, "classifier": {"epochs": 30}, "shard_rows": 64,
           "out": str(tmp_path / "out")}
    cfg.update(extra)
    return cfg


def test_run_features_end_to_end_and_reload(tmp_path):
    summary = run_features(_config(tmp_path), progress=lambda s: None)
    out = tmp_path / "out"
    assert summary["n_train"] + summary["n_test"] == 300
    assert summary["features"]["n_inputs"] == 8 * 2 * 2  # 8 features, 5x5 maps -> 2x2 (drop)
    assert 0.5 < summary["features"]["test_accuracy"] <= 1.0
    assert "raw_pixels" in summary and summary["raw_pixels"]["n_inputs"] == 64
    assert np.sum(summary["features"]["confusion_matrix"]) == summary["n_test"]
    assert pq.ParquetFile(out / "features.parquet").metadata.num_rows == 300
    assert pq.ParquetFile(out / "features.parquet").num_row_groups == 3 + 3  # ceil(150/64) per split
    assert json.loads((out / "metrics.json").read_text())["name"] == "t"
    # the saved autoencoder carries its preprocessing and patch shape: reuse it by path
    model, steps, shape = load_autoencoder(AutoencoderSource(model=str(out / "autoencoder.npz")), out)
    assert shape == [4, 4, 1] and steps[0]["name"] == "zca"
    again = run_features(_config(tmp_path, autoencoder={"model": str(out / "autoencoder.npz")},
                                 compare_raw=False), progress=lambda s: None)
    assert again["features"]["test_accuracy"] == summary["features"]["test_accuracy"]


def test_model_from_sweepnet_train_out_is_usable(tmp_path, digits):
    # `sweepnet train --out` stores data_meta (preprocessing, image_shape) in the model's extra
    model, fitted, _ = _trained(digits.reshape(len(digits), -1), ["standardize"], False)
    path = model.save(tmp_path / "ae.npz", extra={"data_meta": {"preprocessing": fitted,
                                                                "image_shape": [8, 8, 1]}})
    loaded, steps, shape = load_autoencoder(AutoencoderSource(model=str(path)), tmp_path)
    assert shape == [8, 8, 1] and steps[0]["name"] == "standardize"
    W, b, act = fold_autoencoder(loaded, steps, shape)
    assert W.shape == (6, 64) and act == "sigmoid"


def test_photo_crops_are_labelled_and_split_by_region():
    data = photo_crops(PhotoCrops(photos=["astronaut", "coffee"], size=16, train_per_photo=5,
                                  test_per_photo=3, seed=0))
    assert data["X_train"].shape == (10, 16, 16, 3) and data["X_test"].shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(data["y_train"], [0] * 5 + [1] * 5)
    assert data["class_names"] == ["astronaut", "coffee"]


@pytest.mark.parametrize("change,match", [
    ({"autoencoder": {"model": "a.npz", "run_id": "abc"}}, "exactly one of model"),
    ({"images": {"source": "digits", "preprocessing": ["zca"]}}, "images.preprocessing must be empty"),
    ({"crops": {"photos": ["astronaut", "coffee"]}}, "exactly one labelled image source"),
    ({"conv": {"pool": 0}}, "greater than 0"),
    ({"autoencoder": {"train": {"photos": "astronaut", "model": AE}}}, "photos needs patches"),
    ({"autoencoder": {"train": {"model": AE}}}, "exactly one of data \\(a DataSpec\\) or photos"),
    ({"classifier": {"hidden": [], "epochs": -1}}, "greater than 0"),
])
def test_config_errors(tmp_path, change, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        load_features_config(_config(tmp_path, **change))


def test_yaml_examples_validate():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "examples"
    for name in ("conv_pool.yaml", "self_taught.yaml", "colour_conv.yaml"):
        if (root / name).exists():
            load_features_config(root / name)
            assert yaml.safe_load((root / name).read_text())["name"]


def test_autoencoder_from_mlflow_run_id(tmp_path, digits):
    # a real sqlite MLflow store, artifacts laid out like a sweep trial (model/weights.npz, config.yaml)
    from mlflow import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("features", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    model, _, _ = _trained(digits.reshape(len(digits), -1), ["standardize"], False)
    folder = tmp_path / "trial"
    (folder / "model").mkdir(parents=True)
    model.save(folder / "model" / "weights.npz")  # no extra: preprocessing comes from config.yaml
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"name": "ae", "model": AE, "data": {"source": "digits", "limit": 120,
                                             "preprocessing": ["standardize"]}}))
    client.log_artifacts(run_id, str(folder))
    loaded, steps, shape = load_autoencoder(AutoencoderSource(run_id=run_id, tracking_uri=uri), tmp_path)
    assert shape == [8, 8, 1] and [s["name"] for s in steps] == ["standardize"]
    np.testing.assert_array_equal(loaded.params_, model.params_)


def test_cli_features_prints_both_accuracies(tmp_path, capsys):
    from app.cli import main
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    assert main(["features", str(path), "--set", "conv.pool=5", "--out", str(tmp_path / "cli")]) == 0
    text = capsys.readouterr().out
    assert "| pooled features | 8 |" in text and "| raw pixels | 64 |" in text  # 8 features x 1 x 1
    assert "confusion matrix" in text and (tmp_path / "cli" / "classifier.npz").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_config(tmp_path, conv={"pool": 0})))
    assert main(["features", str(bad)]) == 2
    assert "greater than 0" in capsys.readouterr().err
