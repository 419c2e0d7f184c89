"""pipeline.features.outputs: the features Parquet file."""

import json

import numpy as np
import pyarrow.parquet as pq

from pipeline.features import read_features, write_features


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
