"""Self-taught features: autoencoder -> convolution + pooling -> Parquet -> classifier.

UFLDL's recipe: an autoencoder learned on (unlabelled) patches or images gives
first-layer features; they are convolved over labelled images with the
preprocessing and input scaling folded into the weights (``W' x + b'`` equals
the hidden pre-activation of the preprocessed patch), pooled, written to
Parquet one row per image shard by shard, and a classifier (softmax or small
MLP, a :class:`~pipeline.model.DeepLearningModel`) is trained on them next to
the same classifier on raw pixels. :func:`extract_features` is the pure unit
of work per shard (the sweep layer may fan shards out over Dask).

Config (YAML, ``sweepnet features CONFIG``)::

    name: conv_pool
    images: {source: mnist5k, test_fraction: 0.5}       # labelled images (DataSpec)
    autoencoder:                                          # exactly one of model/run_id/train
      train: {data: {source: mnist5k}, patches: {size: 8, count: 20000},
              model: {autoencoder: true, activation: Sigmoid, hidden: [100], ...}}
    conv: {pool: 7, mode: mean}
    classifier: {hidden: [], optimizer: lbfgs, epochs: 200, l2: 1.0e-4}
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kernels import CONV_ACTIVATIONS, convolve_and_pool, fold_whitening
from pipeline import metrics
from pipeline.config import ACTIVATIONS, ConfigError, ModelSpec, format_validation_error, set_dotted
from pipeline.datasets import DataSpec, PreprocessStep, load_data, preprocess, sample_patches
from pipeline.model import DeepLearningModel

_FROZEN = ConfigDict(frozen=True, extra="forbid")
SOFTMAX = {"hidden": [], "optimizer": "lbfgs", "epochs": 200, "l2": 1e-4, "seed": 0}


class PatchSampling(BaseModel):
    """Random ``size`` x ``size`` patches of the autoencoder's images (UFLDL's sampleIMAGES)."""
    model_config = _FROZEN
    size: int = Field(gt=0)
    count: int = Field(10000, gt=0)
    seed: int = Field(0, ge=0)


class AutoencoderTraining(BaseModel):
    """Train the autoencoder in this run: on whole images of ``data`` or on patches of them,
    or on patches of shipped colour ``photos`` (comma-separated names, e.g. skimage-colour)."""
    model_config = _FROZEN
    data: DataSpec | None = None
    photos: str | None = None
    patches: PatchSampling | None = None
    preprocessing: list[PreprocessStep] = Field(default_factory=list)
    model: ModelSpec

    @model_validator(mode="after")
    def _one_source(self):
        if (self.data is None) == (self.photos is None):
            raise ValueError("autoencoder.train needs exactly one of data (a DataSpec) or photos")
        if self.photos is not None and self.patches is None:
            raise ValueError("autoencoder.train.photos needs patches: {size: ..., count: ...}")
        return self


class AutoencoderSource(BaseModel):
    """Where the features come from: a saved model, an MLflow run, or training here."""
    model_config = _FROZEN
    model: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    train: AutoencoderTraining | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("model", "run_id", "train") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"autoencoder needs exactly one of model (a .npz path), run_id (MLflow) or "
                             f"train (a spec), got {given or 'none'}")
        return self


class PhotoCrops(BaseModel):
    """A labelled set of crops of shipped photos, class = photo. Train crops come from the
    left ``split_at`` share of each photo's columns, test crops from the rest (no overlap)."""
    model_config = _FROZEN
    photos: list[str] = Field(min_length=2)
    size: int = Field(64, gt=0)
    train_per_photo: int = Field(150, gt=0)
    test_per_photo: int = Field(50, gt=0)
    split_at: float = Field(0.6, gt=0, lt=1)
    seed: int = Field(0, ge=0)


class ConvSpec(BaseModel):
    """Pooling and chunking (see :func:`kernels.conv.convolve_and_pool`)."""
    model_config = _FROZEN
    pool: int = Field(1, gt=0)
    stride: int | None = Field(None, gt=0)
    mode: Literal["mean", "max"] = "mean"
    remainder: Literal["drop", "partial"] = "drop"
    chunk_images: int = Field(256, gt=0)
    chunk_features: int = Field(200, gt=0)


class FeaturesConfig(BaseModel):
    """One ``sweepnet features`` run (module docstring)."""
    model_config = _FROZEN
    name: str = "features"
    images: DataSpec | None = None
    crops: PhotoCrops | None = None
    autoencoder: AutoencoderSource
    conv: ConvSpec = Field(default_factory=ConvSpec)
    classifier: dict = Field(default_factory=lambda: dict(SOFTMAX))
    compare_raw: bool = True
    shard_rows: int = Field(1000, gt=0)
    out: str | None = None

    @model_validator(mode="after")
    def _one_image_source(self):
        if (self.images is None) == (self.crops is None):
            raise ValueError("give exactly one labelled image source: images (a DataSpec) or crops (photos)")
        if self.images is not None and self.images.preprocessing:
            raise ValueError("images.preprocessing must be empty: the convolution sees raw pixels and the "
                             "autoencoder's own preprocessing is folded into its weights")
        classifier_spec(self.classifier)
        return self


def load_features_config(source, overrides: dict | None = None) -> FeaturesConfig:
    """Validate a features config from a YAML path, a mapping or a FeaturesConfig."""
    if isinstance(source, FeaturesConfig) and not overrides:
        return source
    where = str(source) if isinstance(source, (str, Path)) else "config"
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise ConfigError(f"config file {source} does not exist; try examples/conv_pool.yaml")
        raw = yaml.safe_load(Path(source).read_text()) or {}
    else:
        raw = source.model_dump() if isinstance(source, FeaturesConfig) else dict(source)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    try:
        return FeaturesConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, where)) from None


def classifier_spec(fields: dict) -> ModelSpec:
    """ModelSpec of the classifier; ``hidden: []`` is softmax regression."""
    return ModelSpec.model_validate({**SOFTMAX, **fields})


# ----------------------------------------------------------------------------
# folding preprocessing + input scaling + first layer into conv weights
# ----------------------------------------------------------------------------
def affine_preprocessing(steps, scaler, n_inputs, probe=1e-3):
    """(A, c) with ``scaled(preprocessed(x)) == x @ A + c`` for the affine part of the steps.

    Probed column by column with ``probe * e_i``; exact for zca, standardize,
    scale01 and the input scaler; for ufldl_normalize it keeps the patch-mean
    removal and rescaling but not the clipping (a convolution cannot clip).
    """
    offset, scale = np.asarray(scaler["offset"]), np.asarray(scaler["scale"])

    def pre(X):
        X = preprocess.apply_all(steps, X) if steps else X
        return (X - offset) / scale
    base = pre(np.zeros((1, n_inputs)))
    A = (pre(probe * np.eye(n_inputs)) - base) / probe
    return A, base[0]


def fold_autoencoder(model, steps, patch_shape):
    """Conv weights of the autoencoder's first layer over raw pixels.

    Returns
    -------
    W : ndarray of shape (K, p * p * c), b : ndarray of shape (K,), activation : str
    """
    if getattr(model, "task_", None) != "autoencoder" and not model.spec.autoencoder:
        raise ValueError("the feature model is not an autoencoder; train it with autoencoder: true")
    act = ACTIVATIONS[model.spec.activation][0]
    if act not in CONV_ACTIVATIONS:
        raise ValueError(f"hidden activation {model.spec.activation} cannot be convolved; "
                         f"use one of Sigmoid, Tanh, Rectifier")
    W, b = (a.astype(np.float64) for a in model.layer_params(0))
    if W.shape[1] != int(np.prod(patch_shape)):
        raise ValueError(f"the autoencoder has {W.shape[1]} inputs but its patches are {patch_shape}")
    A, c = affine_preprocessing(steps, model.scaler_, W.shape[1])
    Wf, bf = fold_whitening(W, b + W @ c, A.T)
    return Wf, bf, act


def extract_features(images, W, b, activation, conv: ConvSpec):
    """Pooled features of one shard: images (n, H, W, C) -> (n, K * PH * PW) float32.

    Columns are in (feature, pooled row, pooled col) C order. Pure: inputs
    are not modified. BLAS is held to one thread while Numba threads run.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        pooled = convolve_and_pool(np.ascontiguousarray(images, np.float32), W.astype(np.float32),
                                   b.astype(np.float32), conv.pool, conv.mode, activation, conv.stride,
                                   conv.remainder, conv.chunk_images, conv.chunk_features)
    return pooled.reshape(len(images), -1)


# ----------------------------------------------------------------------------
# data and autoencoder sources
# ----------------------------------------------------------------------------
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
    from pipeline.datasets.sources import load_images
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


def _train_autoencoder(spec: AutoencoderTraining, out: Path):
    if not spec.model.autoencoder:
        raise ValueError("autoencoder.train.model needs autoencoder: true")
    if spec.photos is not None:
        from pipeline.datasets.sources import load_images
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


def _from_run(run_id: str, tracking_uri: str | None):
    from pipeline import tracking
    client = tracking.client(tracking_uri or tracking.default_tracking_uri())
    with tempfile.TemporaryDirectory() as tmp:
        model = DeepLearningModel.load(client.download_artifacts(run_id, "model/weights.npz", tmp))
        try:
            config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", tmp)).read_text())
        except Exception:  # noqa: BLE001 - runs logged without a config fall back to the model's extra
            config = None
    if not (model.extra_ or {}).get("preprocessing") and config:
        meta = load_data(config["data"]).meta  # re-fit the run's preprocessing (deterministic)
        model.extra_ = {**(model.extra_ or {}), "data_meta": meta}
    return model


def load_autoencoder(source: AutoencoderSource, out: Path):
    """(model, fitted preprocessing steps, patch shape [p, p, c])."""
    if source.train is not None:
        return _train_autoencoder(source.train, out)
    model = DeepLearningModel.load(source.model) if source.model else _from_run(source.run_id,
                                                                                 source.tracking_uri)
    extra = getattr(model, "extra_", None) or {}
    meta = extra.get("data_meta") or {}
    steps = extra.get("preprocessing", meta.get("preprocessing") or [])
    shape = extra.get("patch_shape") or meta.get("image_shape")
    if not shape:
        raise ValueError("the autoencoder does not record its patch shape; save it with "
                         "`sweepnet train --out` or train it here (autoencoder.train)")
    return model, steps, list(shape)


# ----------------------------------------------------------------------------
# Parquet features, classifier, the run
# ----------------------------------------------------------------------------
def write_features(path, shards, meta: dict) -> Path:
    """Write (features, labels, split) shards as row groups of one zstd Parquet file.

    Columns: ``features`` FixedSizeList<float32>[F], ``label`` float64,
    ``split`` string; file metadata key ``sweepnet`` holds ``meta`` (JSON).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    writer = None
    try:
        for feats, labels, split in shards:
            width = feats.shape[1]
            table = pa.table({"features": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(feats, np.float32).reshape(-1)), width),
                "label": pa.array(np.asarray(labels, np.float64)), "split": pa.array([split] * len(feats))})
            if writer is None:
                schema = table.schema.with_metadata({"sweepnet": json.dumps(meta, sort_keys=True)})
                writer = pq.ParquetWriter(str(path), schema, compression="zstd")
            writer.write_table(table.cast(writer.schema), row_group_size=len(feats))
    finally:
        if writer is not None:
            writer.close()
    return Path(path)


def read_features(path) -> dict:
    """{split: (features (n, F) float32, labels (n,))} from :func:`write_features`'s file."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    width = table.schema.field("features").type.list_size
    feats = table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, width)
    labels, split = table.column("label").to_numpy(), np.asarray(table.column("split").to_pylist())
    return {s: (feats[split == s], labels[split == s]) for s in ("train", "test")}


def fit_classifier(spec: ModelSpec, X_train, y_train, X_test, y_test, classes):
    """Fit and score; returns (model, metrics dict with accuracy and confusion matrix)."""
    t0 = time.perf_counter()
    model = DeepLearningModel(spec)
    model.fit(X_train, y_train, classes=classes)
    pred = model.predict(X_test)
    return model, {"train_accuracy": model.score(X_train, y_train)["accuracy"],
                   "test_accuracy": float(np.mean(pred == y_test)), "n_inputs": int(X_train.shape[1]),
                   "fit_seconds": time.perf_counter() - t0,
                   "confusion_matrix": metrics.confusion_matrix(y_test, pred, model.classes_).tolist()}


def run_features(config, overrides: dict | None = None, progress=print) -> dict:
    """Run a features config end to end; returns the metrics written to ``out/metrics.json``.

    Parameters
    ----------
    config : FeaturesConfig, dict or YAML path
    overrides : dict, optional
        Dotted keys replacing config values (``{"conv.pool": 7}``).
    progress : callable(str)
    """
    cfg = load_features_config(config, overrides)
    out = Path(cfg.out or f"runs/features/{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = labelled_images(cfg)
    model, steps, patch_shape = load_autoencoder(cfg.autoencoder, out)
    progress(f"autoencoder ready ({time.perf_counter() - t0:.1f} s): {model.sizes_}, patches {patch_shape}, "
             f"preprocessing {[s['name'] for s in steps]}")
    if patch_shape[2] != data["image_shape"][2]:
        raise ValueError(f"the autoencoder's patches have {patch_shape[2]} channels but the images have "
                         f"{data['image_shape'][2]}")
    W, b, act = fold_autoencoder(model, steps, patch_shape)
    t1 = time.perf_counter()
    shards = ((extract_features(X[s:s + cfg.shard_rows], W, b, act, cfg.conv), y[s:s + cfg.shard_rows], split)
              for split in ("train", "test") for X, y in [(data[f"X_{split}"], data[f"y_{split}"])]
              for s in range(0, len(X), cfg.shard_rows))
    meta = {"name": cfg.name, "patch_shape": patch_shape, "image_shape": data["image_shape"],
            "activation": act, "conv": cfg.conv.model_dump(), "layout": "(feature, pool_row, pool_col)"}
    path = write_features(out / "features.parquet", shards, meta)
    n_images = len(data["X_train"]) + len(data["X_test"])
    feats = read_features(path)
    extract_s = time.perf_counter() - t1
    progress(f"features: {feats['train'][0].shape[1]} per image, {n_images} images in {extract_s:.1f} s "
             f"-> {path}")
    spec = classifier_spec(cfg.classifier)
    clf, result = fit_classifier(spec, *feats["train"], *feats["test"], data["classes"])
    clf.save(out / "classifier.npz", extra={"features": meta})
    summary = {"name": cfg.name, "out": str(out), "features": result, "extract_seconds": extract_s,
               "images_per_second": n_images / extract_s, "n_train": len(data["X_train"]),
               "n_test": len(data["X_test"]), "classes": data["classes"],
               "class_names": data.get("class_names")}
    if cfg.compare_raw:
        raw = [a.reshape(len(a), -1).astype(np.float64) for a in (data["X_train"], data["X_test"])]
        _, summary["raw_pixels"] = fit_classifier(spec, raw[0], data["y_train"], raw[1], data["y_test"],
                                                  data["classes"])
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
