"""Where the features pipeline gets its inputs: labelled images (a dataset or photo crops) and the
autoencoder (a saved model, an MLflow run, or trained here)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from pipeline.config import read_yaml
from pipeline.datasets import load_data, load_images, preprocess, sample_patches
from pipeline.features.config import AutoencoderSource, AutoencoderTraining, FeaturesConfig, PhotoCrops
from pipeline.model import DeepLearningModel


def labelled_images(cfg: FeaturesConfig) -> dict:
    """Train/test images (n, H, W, C) float32 with labels and class list."""
    if cfg.crops is not None:
        return photo_crops(cfg.crops)
    data = load_data(cfg.images)
    shape = data.meta.get("image_shape")
    if not shape:
        raise ValueError(f"images.source {cfg.images.source!r} is not an image dataset (no image_shape)")
    if data.X_test is None:
        raise ValueError("images needs a test split: set test_fraction or train_rows")
    as_img = lambda X: np.ascontiguousarray(X.reshape(-1, *shape), np.float32)  # noqa: E731
    return {"X_train": as_img(data.X_train), "y_train": data.y_train, "X_test": as_img(data.X_test),
            "y_test": data.y_test, "classes": data.meta["classes"], "image_shape": list(shape),
            "digest": data.meta["digest"]}


def photo_crops(spec: PhotoCrops) -> dict:
    """Crops of shipped colour photos, label = photo index, train/test from disjoint column ranges."""
    seeds = np.random.SeedSequence(spec.seed).spawn(2 * len(spec.photos))
    parts = {"train": ([], []), "test": ([], [])}
    for label, (name, image) in enumerate(load_images(",".join(spec.photos), colour=True)):
        cut = int(image.shape[1] * spec.split_at)
        for i, (split, region, count) in enumerate((("train", image[:, :cut], spec.train_per_photo),
                                                    ("test", image[:, cut:], spec.test_per_photo))):
            crops, _ = sample_patches([region], spec.size, count, seeds[2 * label + i])
            parts[split][0].append(crops)
            parts[split][1].append(np.full(count, float(label)))
    out = {f"{k}_{s}": np.concatenate(parts[s][j]) for s in parts for j, k in enumerate(("X", "y"))}
    return {**out, "classes": [float(i) for i in range(len(spec.photos))],
            "image_shape": [spec.size, spec.size, 3], "class_names": list(spec.photos)}


def train_autoencoder(spec: AutoencoderTraining, out: Path):
    """Train the autoencoder ``spec`` describes and save it to ``out/autoencoder.npz``;
    returns (model, fitted preprocessing steps, patch shape [p, p, c])."""
    if not spec.model.autoencoder:
        raise ValueError("autoencoder.train.model needs autoencoder: true")
    if spec.photos is not None:
        images = [im for _, im in load_images(spec.photos, colour=True)]
    else:
        data = load_data(spec.data)
        shape, X, images = data.meta.get("image_shape"), data.X_train, None
    if spec.patches is not None:
        if images is None:
            images = list(X.reshape(-1, *shape).astype(np.float32))
        patches, _ = sample_patches(images, spec.patches.size, spec.patches.count, spec.patches.seed)
        shape = list(patches.shape[1:])
        X = patches.reshape(len(patches), -1).astype(np.float64)
    fitted, X = preprocess.fit_apply_all(spec.preprocessing, X)
    steps = [preprocess.to_jsonable(p) for p in fitted]
    model = DeepLearningModel(spec.model).fit(X)
    model.save(out / "autoencoder.npz", extra={"preprocessing": steps, "patch_shape": list(shape)})
    return model, steps, list(shape)


def autoencoder_from_run(run_id: str, tracking_uri: str | None):
    """The model logged by MLflow run ``run_id``, with its data meta when it has no preprocessing record."""
    from pipeline import tracking
    client = tracking.client(tracking_uri or tracking.default_tracking_uri())
    with tempfile.TemporaryDirectory() as tmp:
        model = DeepLearningModel.load(client.download_artifacts(run_id, "model/weights.npz", tmp))
        try:
            config = read_yaml(client.download_artifacts(run_id, "config.yaml", tmp))
        except Exception:  # noqa: BLE001 - runs logged without a config fall back to the model's extra
            config = None
    if not (model.extra_ or {}).get("preprocessing") and config:
        meta = load_data(config["data"]).meta  # re-fit the run's preprocessing (deterministic)
        model.extra_ = {**(model.extra_ or {}), "data_meta": meta}
    return model


def load_autoencoder(source: AutoencoderSource, out: Path):
    """(model, fitted preprocessing steps, patch shape [p, p, c])."""
    if source.train is not None:
        return train_autoencoder(source.train, out)
    model = DeepLearningModel.load(source.model) if source.model else autoencoder_from_run(
        source.run_id, source.tracking_uri)
    extra = getattr(model, "extra_", None) or {}
    meta = extra.get("data_meta") or {}
    steps = extra.get("preprocessing", meta.get("preprocessing") or [])
    shape = extra.get("patch_shape") or meta.get("image_shape")
    if not shape:
        raise ValueError("the autoencoder does not record its patch shape; save it with "
                         "`sweepnet train --out` or train it here (autoencoder.train)")
    return model, steps, list(shape)
