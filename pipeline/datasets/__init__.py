"""Datasets for sweepnet: built-ins, tabular files, Parquet image/patch datasets.

Public entry points
-------------------
DataSpec, PreprocessStep
    The validated ``data:`` section of a config.
load_data(spec) -> LoadedData
    Filtered, split, preprocessed float64 arrays plus ``meta``.
write_patches, write_images, write_dataset
    Build Parquet datasets (schema in :mod:`pipeline.datasets.store`).
read_pixels, iter_shards, read_shard, shard_index, validate
    Read (zero-copy where possible), stream by row group, check before training.
sample_patches, load_images
    UFLDL's ``sampleIMAGES``; the shipped photos.
preprocess
    The preprocessing steps (zca, standardize, ...), fitted and applied.
"""

from pipeline.datasets import preprocess
from pipeline.datasets.builtin import RawData
from pipeline.datasets.checks import validate
from pipeline.datasets.load import LoadedData
from pipeline.datasets.load import load_data
from pipeline.datasets.load import split_indices
from pipeline.datasets.sources import load_images
from pipeline.datasets.sources import sample_patches
from pipeline.datasets.spec import DataSpec
from pipeline.datasets.spec import PreprocessStep
from pipeline.datasets.store import iter_shards
from pipeline.datasets.store import read_pixels
from pipeline.datasets.store import read_shard
from pipeline.datasets.store import shard_index
from pipeline.datasets.store import write_dataset
from pipeline.datasets.writers import write_images
from pipeline.datasets.writers import write_patches

__all__ = [
    "DataSpec",
    "LoadedData",
    "PreprocessStep",
    "RawData",
    "iter_shards",
    "load_data",
    "load_images",
    "preprocess",
    "read_pixels",
    "read_shard",
    "sample_patches",
    "shard_index",
    "split_indices",
    "validate",
    "write_dataset",
    "write_images",
    "write_patches",
]
