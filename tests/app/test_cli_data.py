"""``sweepnet data patches|images|inspect`` end to end (in-process)."""

import json

import numpy as np
import pyarrow.parquet as pq

from app.cli import main as sweepnet
from pipeline.datasets import load_data, read_pixels


def test_patches_then_inspect(tmp_path, capsys):
    out = tmp_path / "p.parquet"
    assert sweepnet(["data", "patches", "--source", "camera,grass", "--size", "6", "--count", "900", "--seed", "2",
                 "--rows-per-group", "400", "--preprocess", "ufldl_normalize", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    assert pq.ParquetFile(out).num_row_groups == 3
    pixels, _, meta = read_pixels(out)
    assert pixels.shape == (900, 36) and meta["provenance"]["seed"] == 2
    assert sweepnet(["data", "inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] and report["rows"] == 900 and report["shards"] == 3
    assert sweepnet(["data", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rows     900" in text and "validation: OK" in text and "ufldl_normalize" in text


def test_colour_patches(tmp_path):
    out = tmp_path / "c.parquet"
    assert sweepnet(["data", "patches", "--source", "chelsea", "--colour", "--size", "8", "--count", "50",
                 "--preprocess", "zca", "--zca-epsilon", "0.1", "--out", str(out)]) == 0
    data = load_data({"source": str(out)})
    assert data.X_train.shape == (50, 192) and data.meta["image_shape"] == (8, 8, 3)
    assert data.meta["preprocessing"][0]["name"] == "zca" and data.meta["preprocessing"][0]["epsilon"] == 0.1


def test_images_digits_matches_builtin(tmp_path):
    out = tmp_path / "d.parquet"
    assert sweepnet(["data", "images", "--source", "digits", "--out", str(out)]) == 0
    a = load_data({"source": str(out), "train_rows": 1347})
    b = load_data({"source": "digits", "train_rows": 1347})
    np.testing.assert_allclose(a.X_train, b.X_train, atol=1e-7)  # stored as float32
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_errors_exit_nonzero_with_message(tmp_path, capsys):
    assert sweepnet(["data", "patches", "--source", "lena", "--out", str(tmp_path / "x.parquet")]) == 1
    assert "unknown image source 'lena'" in capsys.readouterr().err
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    assert sweepnet(["data", "inspect", str(bad)]) == 1
    assert "INVALID" in capsys.readouterr().out
