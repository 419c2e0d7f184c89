"""The features Parquet file: one row per image, written shard by shard as row groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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
