"""Input scaling and target encoding, stored with the model as plain JSON.

Targets follow the lab's remarks: class labels become one-hot rows for a
softmax output, {0, 1} for a sigmoid output and {-1, 1} for a tanh output;
regression targets are scaled into the output's range ([0, 1] sigmoid,
[-1, 1] tanh, standardised for a linear output, as h2o does) and mapped back
by ``predict``. Standardising divides by the sample standard deviation
(n - 1), as h2o's ``DataInfo`` does with ``Vec.sigma()``.
"""

from __future__ import annotations

import numpy as np

OUTPUT_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softmax": (0.0, 1.0)}


def sample_sd(A):
    """Per-column sample standard deviation (n - 1), h2o's ``Vec.sigma()``; 0 for a single row."""
    return A.std(axis=0, ddof=1) if A.shape[0] > 1 else np.zeros(A.shape[1])


def fit_input_scaler(X, standardize: bool, autoencoder: bool) -> dict:
    """Per-column offset and scale: (x - offset) / scale.

    h2o: supervised → (x - mean) / sd with the sample sd (n - 1); autoencoder →
    (x - mean) / (max - min). Constant columns get scale 1.
    """
    n = X.shape[1]
    if not standardize:
        return {"offset": [0.0] * n, "scale": [1.0] * n}
    offset = X.mean(axis=0)
    spread = (X.max(axis=0) - X.min(axis=0)) if autoencoder else sample_sd(X)
    spread = np.where(spread > 0, spread, 1.0)
    return {"offset": offset.tolist(), "scale": spread.tolist()}


def apply_input_scaler(scaler: dict, X, dtype):
    out = (np.asarray(X, dtype=np.float64) - np.asarray(scaler["offset"])) / np.asarray(scaler["scale"])
    return np.ascontiguousarray(out, dtype=dtype)


def fit_target_encoder(y, task: str, output: str, classes=None) -> dict:
    """Describe how targets map to network outputs (JSON-able).

    Parameters
    ----------
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
    task : {"classification", "regression"}
    output : str
        Kernel activation name of the output layer.
    classes : list, optional
        The model's full class list (e.g. the dataset's); labels of ``y`` are added to it. Without it a
        subset of rows that misses a class would give a network with fewer outputs.
    """
    if task == "classification":
        labels = np.unique(y)
        declared = classes is not None and len(classes) > 0
        classes = (np.unique(np.concatenate([np.asarray(classes), labels])) if declared else labels).tolist()
        return {"task": task, "classes": classes, "output": output}
    Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if output in ("sigmoid", "tanh"):
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        offset, scale = lo, np.where(hi > lo, hi - lo, 1.0)
    else:
        sd = sample_sd(Y)
        offset, scale = Y.mean(axis=0), np.where(sd > 0, sd, 1.0)
    return {"task": task, "output": output, "offset": offset.tolist(), "scale": scale.tolist()}


def n_outputs(encoder: dict) -> int:
    if encoder["task"] == "classification":
        k = len(encoder["classes"])
        return k if encoder["output"] == "softmax" else (1 if k == 2 else k)
    return len(encoder["offset"])


def encode_targets(encoder: dict, y, dtype):
    """Targets in the output's range, shape (n_samples, n_outputs)."""
    if encoder["task"] == "classification":
        classes = encoder["classes"]
        index = np.searchsorted(classes, y)
        if np.any(index >= len(classes)) or np.any(np.asarray(classes)[np.minimum(index, len(classes) - 1)] != y):
            unknown = sorted(set(np.asarray(y).tolist()) - set(classes))[:5]
            raise ValueError(f"y holds labels {unknown} not seen in training (classes {classes[:10]}).")
        k = n_outputs(encoder)
        low = -1.0 if encoder["output"] == "tanh" else 0.0
        Y = np.full((len(y), k), low)
        if k == 1 and len(classes) == 2:  # one sigmoid/tanh unit for two classes; one class is one-hot
            Y[index == 1, 0] = 1.0
        else:
            Y[np.arange(len(y)), index] = 1.0
        return np.ascontiguousarray(Y, dtype=dtype)
    Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    unit = (Y - np.asarray(encoder["offset"])) / np.asarray(encoder["scale"])
    if encoder["output"] == "tanh":
        unit = unit * 2.0 - 1.0
    return np.ascontiguousarray(unit, dtype=dtype)


def decode_outputs(encoder: dict, out):
    """Network outputs → (labels, class probabilities) or (values, None)."""
    out = np.asarray(out, dtype=np.float64)
    if encoder["task"] == "classification":
        classes = np.asarray(encoder["classes"])
        if out.shape[1] == 1 and len(classes) == 2:
            p1 = (out[:, 0] + 1.0) / 2.0 if encoder["output"] == "tanh" else out[:, 0]
            p1 = np.clip(p1, 0.0, 1.0)
            proba = np.column_stack([1.0 - p1, p1])
        elif encoder["output"] == "softmax":
            proba = out
        else:
            scores = (out + 1.0) / 2.0 if encoder["output"] == "tanh" else out
            scores = np.clip(scores, 1e-12, None)
            proba = scores / scores.sum(axis=1, keepdims=True)
        return classes[np.argmax(proba, axis=1)], proba
    unit = (out + 1.0) / 2.0 if encoder["output"] == "tanh" else out
    values = unit * np.asarray(encoder["scale"]) + np.asarray(encoder["offset"])
    return (values[:, 0] if values.shape[1] == 1 else values), None
