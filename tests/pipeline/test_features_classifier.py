"""pipeline.features.classifier: fit and score the classifier on features."""

import numpy as np

from pipeline.features import classifier_spec, fit_classifier


def test_fit_classifier_scores_a_separable_problem_without_touching_inputs():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4))
    y = (X[:, 1] > 0).astype(float)
    before = X.copy(), y.copy()
    model, result = fit_classifier(classifier_spec({"epochs": 50}), X[:60], y[:60], X[60:], y[60:], [0.0, 1.0])
    np.testing.assert_array_equal(X, before[0])
    np.testing.assert_array_equal(y, before[1])
    assert result["n_inputs"] == 4 and result["test_accuracy"] >= 0.9 and result["train_accuracy"] >= 0.9
    assert np.sum(result["confusion_matrix"]) == 20 and model.spec.hidden == []
