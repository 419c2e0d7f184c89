"""pipeline.features.run: a features run end to end (and through ``sweepnet features``)."""

import json

import numpy as np
import pyarrow.parquet as pq
import yaml

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


def test_cli_features_prints_both_accuracies(tmp_path, capsys):
    from pipeline.cli import main
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(features_config(tmp_path)))
    assert main(["features", str(path), "--set", "conv.pool=5", "--out", str(tmp_path / "cli")]) == 0
    text = capsys.readouterr().out
    assert "| pooled features | 8 |" in text and "| raw pixels | 64 |" in text  # 8 features x 1 x 1
    assert "confusion matrix" in text and (tmp_path / "cli" / "classifier.npz").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(features_config(tmp_path, conv={"pool": 0})))
    assert main(["features", str(bad)]) == 2
    assert "greater than 0" in capsys.readouterr().err
