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
sample_patches
    UFLDL's ``sampleIMAGES``.
"""

from pipeline.datasets.load import LoadedData, load_data, split_indices
from pipeline.datasets.sources import sample_patches
from pipeline.datasets.spec import DataSpec, PreprocessStep
from pipeline.datasets.store import iter_shards, read_pixels, read_shard, shard_index, write_dataset
from pipeline.datasets.checks import validate
from pipeline.datasets.writers import write_images, write_patches

__all__ = [
    "DataSpec", "LoadedData", "PreprocessStep", "iter_shards", "load_data", "read_pixels", "read_shard",
    "sample_patches", "shard_index", "split_indices", "validate", "write_dataset", "write_images",
    "write_patches",
]
