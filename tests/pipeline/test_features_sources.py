"""pipeline.features.sources: labelled images and the autoencoder from a file, a run or training."""

import numpy as np
import yaml

from features_helpers import AE, digits, trained  # noqa: F401 (digits is a fixture)
from pipeline.features import AutoencoderSource, PhotoCrops, fold_autoencoder, load_autoencoder, photo_crops


def test_model_from_sweepnet_train_out_is_usable(tmp_path, digits):
    # `sweepnet train --out` stores data_meta (preprocessing, image_shape) in the model's extra
    model, fitted, _ = trained(digits.reshape(len(digits), -1), ["standardize"], False)
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


def test_autoencoder_from_mlflow_run_id(tmp_path, digits):
    # a real sqlite MLflow store, artifacts laid out like a sweep trial (model/weights.npz, config.yaml)
    from mlflow import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("features", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    model, _, _ = trained(digits.reshape(len(digits), -1), ["standardize"], False)
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
