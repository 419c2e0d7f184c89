"""DataSpec validation, built-ins, tabular files, splits and digests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipeline.datasets import DataSpec, load_data


def test_xor_matches_the_lab():
    data = load_data({"source": "xor"})
    np.testing.assert_array_equal(data.X_train, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(data.y_train, [-1, 1, 1, -1])
    assert data.X_test is None and data.X_valid is None
    assert data.meta["classes"] == [-1, 1]
    assert data.meta["image_shape"] is None


def test_digits_first_rows_split():
    data = load_data(DataSpec(source="digits", train_rows=1347))
    assert data.X_train.shape == (1347, 64) and data.X_test.shape == (450, 64)
    assert data.X_train.dtype == np.float64 and data.X_train.flags.c_contiguous
    assert data.X_train.flags.writeable
    assert 0.0 <= data.X_train.min() and data.X_train.max() == 1.0
    assert data.meta["image_shape"] == (8, 8, 1)
    assert data.meta["classes"] == list(range(10))
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(data.y_test, load_digits().target[1347:])


def test_labels_filter_limit_and_seeded_split():
    spec = {"source": "digits", "labels": [0, 1, 2, 3, 4], "limit": 500,
            "test_fraction": 0.2, "valid_fraction": 0.25, "split_seed": 3}
    a, b = load_data(spec), load_data(spec)
    assert set(np.unique(a.y_train)) <= {0, 1, 2, 3, 4}
    assert (a.meta["n_train"], a.meta["n_valid"], a.meta["n_test"]) == (300, 100, 100)
    np.testing.assert_array_equal(a.X_valid, b.X_valid)
    c = load_data({**spec, "split_seed": 4})
    assert not np.array_equal(a.y_test, c.y_test)
    assert a.meta["digest"] == b.meta["digest"] != c.meta["digest"]


def test_digest_is_stable_across_processes():
    code = ("from pipeline.datasets import load_data;"
            "print(load_data({'source': 'xor'}).meta['digest'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == load_data({"source": "xor"}).meta["digest"]


def test_preprocessing_fitted_on_train_and_json_able():
    data = load_data({"source": "digits", "train_rows": 1000, "preprocessing": ["standardize"]})
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-12)
    assert abs(data.X_test.mean()) > 1e-6  # test rows use the train statistics
    steps = json.loads(json.dumps(data.meta["preprocessing"]))
    assert steps[0]["name"] == "standardize" and len(steps[0]["mean"]) == 64


def test_csv_and_parquet_tabular(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,kind\n1,2,x\n3,4,y\n5,6,x\n")
    data = load_data({"source": str(csv), "target": "kind"})
    np.testing.assert_array_equal(data.X_train, [[1, 2], [3, 4], [5, 6]])
    assert list(data.y_train) == ["x", "y", "x"] and data.meta["classes"] == ["x", "y"]
    assert data.meta["feature_names"] == ["a", "b"]
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        pq.write_table(pa.table({"f": [1.0 * i, 2.0], "t": [0, 1]}), folder / f"p{i}.parquet")
    data = load_data({"source": str(folder), "features": ["f"], "target": "t"})
    assert data.X_train.shape == (4, 1) and list(data.y_train) == [0, 1, 0, 1]
    unsup = load_data({"source": str(folder)})
    assert unsup.y_train is None and unsup.X_train.shape == (4, 2)


def test_unknown_source_lists_builtins():
    with pytest.raises(ValueError, match=r"unknown data source 'nope'.*digits.*\.parquet.*\.csv"):
        load_data({"source": "nope"})


def test_missing_column_names_file_and_available(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"t\.csv: target column 'y' not found; available columns: \['a', 'b'\]"):
        load_data({"source": str(csv), "target": "y"})
    with pytest.raises(ValueError, match=r"features column 'c' not found"):
        load_data({"source": str(csv), "features": ["c"]})


def test_nan_names_file_column_count_row_and_fix(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"a": [1.0, np.nan, np.inf, 2.0], "b": [1.0, 2, 3, 4]}), path)
    with pytest.raises(ValueError, match=r"n\.parquet: column 'a' has 2 NaN/inf values .*first at row 1.*drop or impute"):
        load_data({"source": str(path)})


def test_text_feature_column_is_rejected(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match=r"column 'b' has type string, not a number"):
        load_data({"source": str(csv)})


@pytest.mark.parametrize("bad, match", [
    ({"source": "xor", "bogus": 1}, "bogus"),
    ({"source": "xor", "test_fraction": 1.0}, "test_fraction"),
    ({"source": "digits", "train_rows": 10, "test_fraction": 0.1}, "set only one"),
    ({"source": "xor", "labels": []}, "empty list"),
    ({"source": "xor", "preprocessing": ["whiten"]}, "ufldl_normalize"),
])
def test_spec_rejects_bad_values(bad, match):
    with pytest.raises(ValidationError, match=match):
        DataSpec.model_validate(bad)


def test_split_errors():
    with pytest.raises(ValueError, match=r"train_rows=5000 but 'digits' has only 1797 rows"):
        load_data({"source": "digits", "train_rows": 5000})
    with pytest.raises(ValueError, match=r"labels=\[42\] keeps no rows.*classes are"):
        load_data({"source": "digits", "labels": [42]})
    with pytest.raises(ValueError, match=r"one target, 'label'"):
        load_data({"source": "digits", "target": "digit"})


def test_digits_read_without_scikit_learn_are_load_digits_bit_for_bit():
    # read from scikit-learn's own csv without importing it (~1-2 s of a small sweep's start)
    code = ("import sys; from pipeline.datasets.builtin import load_builtin; raw = load_builtin('digits'); "
            "print('sklearn' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.stdout.strip() == "False"
    from sklearn.datasets import load_digits

    from pipeline.datasets.builtin import load_builtin

    raw, bunch = load_builtin("digits"), load_digits()
    np.testing.assert_array_equal(raw.X, np.ascontiguousarray(bunch.data, dtype=np.float64) / 16.0)
    np.testing.assert_array_equal(raw.y, bunch.target.astype(np.float64))
    assert raw.X.flags.c_contiguous and raw.X.dtype == np.float64 and raw.X.shape == (1797, 64)
