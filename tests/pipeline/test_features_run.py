"""pipeline.features.run: a features run end to end."""

import json

import numpy as np
import pyarrow.parquet as pq

from features_helpers import features_config
from pipeline.features import AutoencoderSource, load_autoencoder, run_features


def test_run_features_end_to_end_and_reload(tmp_path):
    summary = run_features(features_config(tmp_path), progress=lambda s: None)
    out = tmp_path / "out"
    assert summary["n_train"] + summary["n_test"] == 300
    assert summary["features"]["n_inputs"] == 8 * 2 * 2  # 8 features, 5x5 maps -> 2x2 (drop)
    assert 0.5 < summary["features"]["test_accuracy"] <= 1.0
    assert "raw_pixels" in summary and summary["raw_pixels"]["n_inputs"] == 64
    assert np.sum(summary["features"]["confusion_matrix"]) == summary["n_test"]
    assert pq.ParquetFile(out / "features.parquet").metadata.num_rows == 300
    assert pq.ParquetFile(out / "features.parquet").num_row_groups == 3 + 3  # ceil(150/64) per split
    assert json.loads((out / "metrics.json").read_text())["name"] == "t"
    # the saved autoencoder carries its preprocessing and patch shape: reuse it by path
    model, steps, shape = load_autoencoder(AutoencoderSource(model=str(out / "autoencoder.npz")), out)
    assert shape == [4, 4, 1] and steps[0]["name"] == "zca"
    reuse = features_config(tmp_path, autoencoder={"model": str(out / "autoencoder.npz")}, compare_raw=False)
    again = run_features(reuse, progress=lambda s: None)
    assert again["features"]["test_accuracy"] == summary["features"]["test_accuracy"]
