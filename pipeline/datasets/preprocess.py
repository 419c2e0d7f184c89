"""Named, fitted, serialisable preprocessing steps.

Each step is a pair of pure functions: ``fit(name, X, **options) -> params``
learns what it needs from the training rows, ``apply(params, X)`` transforms
any rows with those numbers. ``params`` is a plain dict whose first key is
``"name"``; :func:`to_jsonable` turns its arrays into lists so a dataset or a
model can store it in JSON, and :func:`apply` accepts either form. So the same
numbers that shaped the training data shape new data later.

Steps
-----
ufldl_normalize
    UFLDL's ``normalizeData``: subtract each row's (patch's) own mean, clip to
    +-``bound`` where ``bound = 3 * std`` of all mean-removed training values
    (``ddof=1`` like MATLAB's ``std``), divide by ``bound`` (now in [-1, 1]) and
    map ``(x + 1) * 0.4 + 0.1`` into [0.1, 0.9] for a sigmoid output layer.
    Not invertible (each patch's mean is discarded).
standardize
    Per feature ``(x - mean) / sd`` (``ddof=0``); a constant feature gets
    ``sd = 1`` so it maps to 0 instead of NaN.
zca
    ZCA whitening (UFLDL's linear-decoder exercise): ``mean`` = the mean patch
    (per-feature mean over rows), ``Sigma = Xc^T Xc / m`` (features x
    features), ``Sigma = U diag(s) U^T``, ``T = U diag(1/sqrt(s + eps)) U^T``;
    ``apply`` returns ``(X - mean) @ T`` (``T`` is symmetric). :func:`inverse`
    maps whitened vectors back to pixel space with ``T^-1 = U diag(sqrt(s +
    eps)) U^T`` (computed from the stored ``T``; used to draw feature pictures).
    Only ``mean`` and ``T`` are stored.
scale01
    Per feature ``(x - min) / (max - min)``; a constant feature maps to 0.
"""

from __future__ import annotations

import json

import numpy as np

from pipeline.datasets.spec import STEP_NAMES

_ARRAY_KEYS = ("mean", "sd", "T", "min", "range")


def _as_2d(X, what="X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"{what} is {X.ndim}-dimensional with shape {X.shape}; preprocessing needs a 2-D "
            "array of shape (n_samples, n_features). Reshape images to rows first, "
            "e.g. X.reshape(len(X), -1)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{what} has no rows (shape {X.shape}); a step cannot be fitted on empty data.")
    return X


def fit(name: str, X, epsilon: float = 0.1) -> dict:
    """Learn the numbers of step ``name`` from the training rows.

    Parameters
    ----------
    name : str
        One of ``ufldl_normalize``, ``standardize``, ``zca``, ``scale01``.
    X : array_like of shape (n_samples, n_features)
        Training rows.
    epsilon : float
        ZCA regulariser; ignored by the other steps.

    Returns
    -------
    params : dict
        ``{"name": name, ...}`` with float64 arrays (see :func:`to_jsonable`).
    """
    X = _as_2d(X)
    if name == "ufldl_normalize":
        centred = X - X.mean(axis=1, keepdims=True)
        sd = centred.std(ddof=1) if centred.size > 1 else 0.0
        return {"name": name, "bound": float(3.0 * sd) if sd > 0 else 1.0}
    if name == "standardize":
        sd = X.std(axis=0)
        return {"name": name, "mean": X.mean(axis=0), "sd": np.where(sd > 0, sd, 1.0)}
    if name == "scale01":
        lo, hi = X.min(axis=0), X.max(axis=0)
        return {"name": name, "min": lo, "range": np.where(hi > lo, hi - lo, 1.0)}
    if name == "zca":
        return _fit_zca(X, float(epsilon))
    raise ValueError(f"unknown preprocessing step {name!r}; choose one of {list(STEP_NAMES)}")


def _fit_zca(X: np.ndarray, epsilon: float) -> dict:
    if epsilon < 0:
        raise ValueError(f"zca epsilon={epsilon} is negative; use a value >= 0 (UFLDL uses 0.1).")
    mean = X.mean(axis=0)
    centred = X - mean
    sigma = centred.T @ centred / X.shape[0]
    s, U = np.linalg.eigh(sigma)  # symmetric PSD: eigh == svd, faster and sorted
    s = np.clip(s, 0.0, None)
    if epsilon == 0 and np.any(s <= 1e-12 * max(s.max(), 1e-300)):
        raise ValueError(
            "zca with epsilon=0 on a singular covariance (some directions have zero variance, "
            "e.g. after removing each patch's mean); set epsilon > 0, e.g. 0.1 or 1e-5."
        )
    T = (U / np.sqrt(s + epsilon)) @ U.T
    return {"name": "zca", "epsilon": epsilon, "mean": mean, "T": T}


def _arr(params: dict, key: str) -> np.ndarray:
    return np.asarray(params[key], dtype=np.float64)


def _check_width(params: dict, X: np.ndarray, key: str) -> None:
    width = np.shape(params[key])[0]
    if X.shape[1] != width:
        raise ValueError(
            f"step {params['name']!r} was fitted on {width} features but X has {X.shape[1]} "
            "columns; apply it to data with the same features it was fitted on."
        )


def apply(params: dict, X) -> np.ndarray:
    """Transform rows with fitted ``params``; returns a new float64 array.

    Parameters
    ----------
    params : dict
        Output of :func:`fit` (arrays) or :func:`from_json` / JSON lists.
    X : array_like of shape (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_samples, n_features), C-contiguous float64
    """
    X = _as_2d(X)
    name = params.get("name")
    if name == "ufldl_normalize":
        bound = float(params["bound"])
        out = X - X.mean(axis=1, keepdims=True)
        np.clip(out, -bound, bound, out=out)
        out /= bound
        return (out + 1.0) * 0.4 + 0.1
    if name == "standardize":
        _check_width(params, X, "mean")
        return np.ascontiguousarray((X - _arr(params, "mean")) / _arr(params, "sd"))
    if name == "scale01":
        _check_width(params, X, "min")
        return np.ascontiguousarray((X - _arr(params, "min")) / _arr(params, "range"))
    if name == "zca":
        _check_width(params, X, "mean")
        return np.ascontiguousarray((X - _arr(params, "mean")) @ _arr(params, "T"))
    raise ValueError(f"unknown preprocessing step {name!r}; choose one of {list(STEP_NAMES)}")


def inverse(params: dict, X) -> np.ndarray:
    """Map transformed rows back to the original (pixel) space.

    ``ufldl_normalize`` discards each patch's mean and clips, so it has no
    inverse: a ``ValueError`` says so.
    """
    X = _as_2d(X)
    name = params.get("name")
    if name == "zca":
        _check_width(params, X, "mean")
        w, U = np.linalg.eigh(_arr(params, "T"))  # T is symmetric positive definite
        t_inv = (U / w) @ U.T
        return np.ascontiguousarray(X @ t_inv + _arr(params, "mean"))
    if name == "standardize":
        _check_width(params, X, "mean")
        return np.ascontiguousarray(X * _arr(params, "sd") + _arr(params, "mean"))
    if name == "scale01":
        _check_width(params, X, "min")
        return np.ascontiguousarray(X * _arr(params, "range") + _arr(params, "min"))
    if name == "ufldl_normalize":
        raise ValueError(
            "ufldl_normalize has no inverse: it removes each patch's mean and clips outliers. "
            "Show pictures in the normalised space instead (skip the inverse)."
        )
    raise ValueError(f"unknown preprocessing step {name!r}; choose one of {list(STEP_NAMES)}")


def fit_apply_all(steps, X) -> tuple[list[dict], np.ndarray]:
    """Fit each step on the output of the previous one; return params and X.

    Parameters
    ----------
    steps : list of PreprocessStep or dict or str
    X : array_like of shape (n_samples, n_features)
    """
    fitted = []
    X = _as_2d(X)
    for step in steps:
        name, eps = _step_name_eps(step)
        params = fit(name, X, epsilon=eps)
        X = apply(params, X)
        fitted.append(params)
    return fitted, X


def apply_all(fitted: list[dict], X) -> np.ndarray:
    """Apply fitted steps in order (for validation/test rows or new data)."""
    X = _as_2d(X)
    for params in fitted:
        X = apply(params, X)
    return X


def _step_name_eps(step) -> tuple[str, float]:
    if isinstance(step, str):
        return step, 0.1
    if isinstance(step, dict):
        return step["name"], float(step.get("epsilon", 0.1))
    return step.name, float(step.epsilon)


def to_jsonable(params: dict) -> dict:
    """Copy of ``params`` with arrays as nested lists (``json.dumps``-able)."""
    return {k: (np.asarray(v).tolist() if k in _ARRAY_KEYS else v) for k, v in params.items()}


def to_json(params: dict) -> str:
    """Serialise fitted params to a JSON string (lossless for float64)."""
    return json.dumps(to_jsonable(params))


def from_json(text: str) -> dict:
    """Inverse of :func:`to_json`; arrays come back as float64 ndarrays."""
    raw = json.loads(text)
    return {k: (np.asarray(v, dtype=np.float64) if k in _ARRAY_KEYS else v) for k, v in raw.items()}
