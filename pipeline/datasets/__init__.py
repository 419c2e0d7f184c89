"""Datasets for sweepnet: built-ins, tabular files, Parquet image/patch datasets.

Public entry points
-------------------
DataSpec, PreprocessStep
    The validated ``data:`` section of a config.
load_data(spec) -> LoadedData
    Filtered, split, preprocessed float64 arrays plus ``meta``.
"""

from pipeline.datasets.load import LoadedData, load_data, split_indices
from pipeline.datasets.spec import DataSpec, PreprocessStep

__all__ = ["DataSpec", "LoadedData", "PreprocessStep", "load_data", "split_indices"]
