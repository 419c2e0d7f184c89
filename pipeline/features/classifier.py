"""The classifier (softmax or a small MLP) trained on features or raw pixels, and its scores."""

from __future__ import annotations

import time

import numpy as np

from pipeline import metrics
from pipeline.config import ModelSpec
from pipeline.model import DeepLearningModel


def fit_classifier(spec: ModelSpec, X_train, y_train, X_test, y_test, classes):
    """Fit and score; returns (model, metrics dict with accuracy and confusion matrix)."""
    t0 = time.perf_counter()
    model = DeepLearningModel(spec)
    model.fit(X_train, y_train, classes=classes)
    pred = model.predict(X_test)
    return model, {"train_accuracy": model.score(X_train, y_train)["accuracy"],
                   "test_accuracy": float(np.mean(pred == y_test)), "n_inputs": int(X_train.shape[1]),
                   "fit_seconds": time.perf_counter() - t0,
                   "confusion_matrix": metrics.confusion_matrix(y_test, pred, model.classes_).tolist()}
