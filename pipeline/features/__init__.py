"""Self-taught features: autoencoder -> convolution + pooling -> Parquet -> classifier.

UFLDL's recipe: an autoencoder learned on (unlabelled) patches or images gives
first-layer features; they are convolved over labelled images with the
preprocessing and input scaling folded into the weights (``W' x + b'`` equals
the hidden pre-activation of the preprocessed patch), pooled, written to
Parquet one row per image shard by shard, and a classifier (softmax or small
MLP, a :class:`~pipeline.model.DeepLearningModel`) is trained on them next to
the same classifier on raw pixels. :func:`extract_features` is the pure unit
of work per shard; ``flows.features`` fans the shards out over Dask and tracks
the run in MLflow (:func:`open_features_run`, :func:`log_features_run`).

Config (YAML, ``sweepnet features CONFIG``)::

    name: conv_pool
    images: {source: mnist5k, test_fraction: 0.5}       # labelled images (DataSpec)
    autoencoder:                                          # exactly one of model/run_id/train
      train: {data: {source: mnist5k}, patches: {size: 8, count: 20000},
              model: {autoencoder: true, activation: Sigmoid, hidden: [100], ...}}
    conv: {pool: 7, mode: mean}
    classifier: {hidden: [], optimizer: lbfgs, epochs: 200, l2: 1.0e-4}
"""

from pipeline.features.classifier import fit_classifier
from pipeline.features.config import AutoencoderSource
from pipeline.features.config import AutoencoderTraining
from pipeline.features.config import ConvSpec
from pipeline.features.config import FeaturesConfig
from pipeline.features.config import PatchSampling
from pipeline.features.config import PhotoCrops
from pipeline.features.config import SOFTMAX
from pipeline.features.config import classifier_spec
from pipeline.features.config import load_features_config
from pipeline.features.extraction import affine_preprocessing
from pipeline.features.extraction import extract_features
from pipeline.features.extraction import fold_autoencoder
from pipeline.features.outputs import read_features
from pipeline.features.outputs import write_features
from pipeline.features.run import FeaturesJob
from pipeline.features.run import finish_features
from pipeline.features.run import prepare_features
from pipeline.features.run import run_features
from pipeline.features.run import shard_images
from pipeline.features.run import shard_slices
from pipeline.features.tracked import features_metrics
from pipeline.features.tracked import log_features_run
from pipeline.features.tracked import open_features_run
from pipeline.features.sources import autoencoder_from_run
from pipeline.features.sources import labelled_images
from pipeline.features.sources import load_autoencoder
from pipeline.features.sources import photo_crops
from pipeline.features.sources import train_autoencoder

__all__ = [
    "AutoencoderSource",
    "AutoencoderTraining",
    "ConvSpec",
    "FeaturesConfig",
    "FeaturesJob",
    "PatchSampling",
    "PhotoCrops",
    "SOFTMAX",
    "affine_preprocessing",
    "autoencoder_from_run",
    "classifier_spec",
    "extract_features",
    "features_metrics",
    "finish_features",
    "fit_classifier",
    "fold_autoencoder",
    "labelled_images",
    "load_autoencoder",
    "load_features_config",
    "log_features_run",
    "open_features_run",
    "photo_crops",
    "prepare_features",
    "read_features",
    "run_features",
    "shard_images",
    "shard_slices",
    "train_autoencoder",
    "write_features",
]
