"""The ``sweepnet features`` config: labelled images, the autoencoder source, pooling, classifier.

Validated once here (pydantic, frozen); the rest of :mod:`pipeline.features` receives these objects.
See :mod:`pipeline.features` for an example YAML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.config import ConfigError, ModelSpec, read_yaml, validate_config
from pipeline.datasets import DataSpec, PreprocessStep

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
        raw = read_yaml(source) or {}
    else:
        raw = source.model_dump() if isinstance(source, FeaturesConfig) else dict(source)
    return validate_config(FeaturesConfig, raw, overrides, where)


def classifier_spec(fields: dict) -> ModelSpec:
    """ModelSpec of the classifier; ``hidden: []`` is softmax regression."""
    return ModelSpec.model_validate({**SOFTMAX, **fields})
