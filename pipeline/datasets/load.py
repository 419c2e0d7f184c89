"""``load_data(spec)``: source -> filtered, split, preprocessed float64 arrays.

Order of operations (each documented in :class:`DataSpec`):

1. read the source (built-in, tabular CSV/Parquet, or image/patch Parquet);
2. keep only ``labels`` classes, then the first ``limit`` rows;
3. split: ``train_rows`` (first N train, rest test) or a seeded
   ``test_fraction`` split, then ``valid_fraction`` of the non-test rows;
4. fit ``preprocessing`` on the training rows, apply to all three parts.

Every returned array is a fresh, writable, C-contiguous float64 copy (a
zero-copy Arrow view is read-only, which Numba types differently and a model
cannot normalise in place), so callers may mutate them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.datasets import preprocess
from pipeline.datasets.generated import is_generated, load_generated
from pipeline.datasets.builtin import BUILTINS, RawData, load_builtin
from pipeline.datasets.spec import DataSpec
from pipeline.datasets.tabular import load_tabular, parquet_files

_DIGEST_VERSION = b"sweepnet-data-v1\0"


@dataclass
class LoadedData:
    """Arrays ready for ``model.fit``; ``None`` where a part is absent.

    Attributes
    ----------
    X_train, X_valid, X_test : ndarray of shape (n_part, n_features) or None
        float64, C-contiguous, writable.
    y_train, y_valid, y_test : ndarray of shape (n_part,) or None
        Labels as given by the source (float64 for numbers, str for text);
        ``None`` for unsupervised sources.
    meta : dict
        ``digest`` (sha256 hex of source contents + spec), ``source``,
        ``image_shape`` ((h, w, c) or None), ``n_features``, ``feature_names``
        (tabular only, else None), ``classes`` (sorted list or None),
        ``preprocessing`` (fitted step dicts, JSON-able), ``n_train``,
        ``n_valid``, ``n_test``, ``spec`` (the spec as a dict), ``class_names``
        (names for the label indices of folder image datasets, else None).
        ``preprocessing`` lists every step from raw pixels to ``X``: first the
        steps a Parquet dataset was written with, then the spec's steps.
    """

    X_train: np.ndarray
    y_train: np.ndarray | None
    X_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def _unknown_source(source: str) -> ValueError:
    return ValueError(
        f"unknown data source {source!r}: not a built-in and not an existing path. Built-ins: "
        f"{sorted(BUILTINS)}. Paths: a .parquet file, a directory of .parquet files, or a .csv file. "
        "Generated patches: patches:skimage-grey?size=8&count=10000&seed=0&whiten=true"
    )


def _is_image_parquet(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(parquet_files(path)[0])
    except Exception:  # unreadable files get a precise error from the full reader
        return False
    return "pixels" in schema.names


def _read_source(spec: DataSpec) -> tuple[RawData, bytes]:
    """The raw rows and the bytes-digest of the source contents."""
    if is_generated(spec.source):
        raw = load_generated(spec.source)
        return raw, hashlib.sha256(raw.X.tobytes()).digest()
    if spec.source in BUILTINS:
        raw = load_builtin(spec.source)
        if spec.target not in (None, "label"):
            raise ValueError(f"built-in {spec.source!r} has one target, 'label'; got target={spec.target!r}. "
                             "Omit target or set it to label.")
        h = hashlib.sha256(raw.X.tobytes())
        h.update(b"" if raw.y is None else raw.y.tobytes())
        return raw, h.digest()
    path = Path(spec.source).expanduser()
    if not path.exists() or not (path.is_dir() or path.suffix in (".parquet", ".csv")):
        raise _unknown_source(spec.source)
    if path.suffix != ".csv" and _is_image_parquet(path):
        from pipeline.datasets.store import read_raw

        if spec.features not in (None, ["pixels"]) or spec.target not in (None, "label"):
            raise ValueError(
                f"{path}: an image/patch dataset has features 'pixels' and target 'label'; got "
                f"features={spec.features}, target={spec.target!r}. Omit both."
            )
        raw = read_raw(path)
    else:
        raw = load_tabular(path, spec.features, spec.target)
    return raw, _file_digest(path)


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(file.name.encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.digest()


def _filter_rows(raw: RawData, spec: DataSpec) -> tuple[np.ndarray, np.ndarray | None]:
    X, y = raw.X, raw.y
    if spec.labels is not None:
        if y is None:
            raise ValueError(f"labels={spec.labels} filters by class, but source {spec.source!r} has no "
                             "labels; set target to a label column or drop labels.")
        keep = np.isin(y, np.asarray(spec.labels, dtype=y.dtype))
        if not keep.any():
            raise ValueError(f"labels={spec.labels} keeps no rows of {spec.source!r}; its classes are "
                             f"{_classes(y)}.")
        X, y = X[keep], y[keep]
    if spec.limit is not None:
        X = X[: spec.limit]
        y = None if y is None else y[: spec.limit]
    return X, y


def split_indices(n: int, spec: DataSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (sorted) of the train, valid and test parts.

    Parameters
    ----------
    n : int
        Number of rows after filtering.
    spec : DataSpec
    """
    if spec.train_rows is not None:
        if spec.train_rows > n:
            raise ValueError(f"train_rows={spec.train_rows} but {spec.source!r} has only {n} rows after "
                             "filtering; lower train_rows or drop limit/labels.")
        test, pool = np.arange(spec.train_rows, n), np.arange(spec.train_rows)
    else:
        perm = np.random.default_rng(spec.split_seed).permutation(n)
        n_test = int(round(spec.test_fraction * n))
        test, pool = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    n_valid = int(round(spec.valid_fraction * len(pool)))
    chosen = np.random.default_rng([spec.split_seed, 1]).permutation(len(pool))[:n_valid]
    valid = np.sort(pool[chosen])
    train = np.setdiff1d(pool, valid, assume_unique=True)
    if len(train) == 0:
        raise ValueError(f"the split leaves no training rows out of {n} (test_fraction="
                         f"{spec.test_fraction}, valid_fraction={spec.valid_fraction}); lower the fractions.")
    return train, valid, test


def _classes(y: np.ndarray | None) -> list | None:
    """Sorted distinct labels for class-like targets (text, or <= 256 integer values)."""
    if y is None:
        return None
    values = np.unique(y)
    if y.dtype.kind in "US":
        return [str(v) for v in values]
    if len(values) <= 256 and np.all(values == np.round(values)):
        return [int(v) for v in values]
    return None


def _part(X, y, rows):
    if len(rows) == 0:
        return None, None
    Xp = np.ascontiguousarray(X[rows], dtype=np.float64)
    return Xp, (None if y is None else y[rows].copy())


def load_data(spec: DataSpec | dict) -> LoadedData:
    """Load, filter, split and preprocess the data described by ``spec``.

    Parameters
    ----------
    spec : DataSpec or dict
        A dict is validated into a :class:`DataSpec`.

    Returns
    -------
    LoadedData

    Raises
    ------
    ValueError
        Unknown source, missing column, NaN/inf values, bad image dataset,
        or a split that leaves no training rows; the message names the fix.
    """
    if not isinstance(spec, DataSpec):
        spec = DataSpec.model_validate(spec)
    raw, content = _read_source(spec)
    X, y = _filter_rows(raw, spec)
    train, valid, test = split_indices(len(X), spec)
    X_train, y_train = _part(X, y, train)
    X_valid, y_valid = _part(X, y, valid)
    X_test, y_test = _part(X, y, test)
    fitted, X_train = preprocess.fit_apply_all(spec.preprocessing, X_train)
    if fitted:
        X_valid = None if X_valid is None else preprocess.apply_all(fitted, X_valid)
        X_test = None if X_test is None else preprocess.apply_all(fitted, X_test)
    digest = hashlib.sha256(_DIGEST_VERSION + content + spec.cache_key().encode()).hexdigest()
    meta = {
        "digest": digest,
        "source": raw.description,
        "image_shape": raw.image_shape,
        "n_features": int(X.shape[1]),
        "feature_names": None if raw.image_shape else raw.feature_names,
        "classes": _classes(y),
        "class_names": raw.class_names,
        "preprocessing": list(raw.stored_preprocessing) + [preprocess.to_jsonable(p) for p in fitted],
        "n_train": len(train),
        "n_valid": len(valid),
        "n_test": len(test),
        "spec": spec.model_dump(mode="json"),
    }
    return LoadedData(X_train, y_train, X_valid, y_valid, X_test, y_test, meta)
