"""Scoring metrics (h2o's names), computed in float64 from decoded predictions."""

from __future__ import annotations

import numpy as np


def classification_metrics(y, labels, proba, classes) -> dict:
    """logloss, misclassification, accuracy, MSE (of class probabilities)."""
    classes = np.asarray(classes)
    index = np.searchsorted(classes, y)
    p_true = np.clip(proba[np.arange(len(y)), index], 1e-15, 1.0)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y)), index] = 1.0
    accuracy = float(np.mean(labels == y))
    mse = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    return {"logloss": float(-np.mean(np.log(p_true))), "accuracy": accuracy,
            "misclassification": 1.0 - accuracy, "MSE": mse, "RMSE": mse ** 0.5}


def regression_metrics(y, values) -> dict:
    """MSE, RMSE, MAE, deviance (= MSE for gaussian)."""
    diff = np.asarray(values, dtype=np.float64).reshape(len(y), -1) - np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    mse = float(np.mean(np.sum(diff ** 2, axis=1)))
    return {"MSE": mse, "RMSE": mse ** 0.5, "MAE": float(np.mean(np.abs(diff))), "deviance": mse}


def confusion_matrix(y, labels, classes) -> np.ndarray:
    """Counts of shape (n_classes, n_classes): rows actual, columns predicted."""
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for actual, predicted in zip(np.asarray(y).tolist(), np.asarray(labels).tolist()):
        matrix[index[actual], index[predicted]] += 1
    return matrix


def default_stopping_metric(task: str) -> str:
    return "logloss" if task == "classification" else "deviance"


LOWER_IS_BETTER = {"logloss": True, "MSE": True, "RMSE": True, "MAE": True, "deviance": True,
                   "misclassification": True, "accuracy": False, "loss": True}
