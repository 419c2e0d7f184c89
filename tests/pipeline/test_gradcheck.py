"""Gradient checks of whole configs (pipeline.gradcheck): the objective the gate checks is the one trained."""

import numpy as np

from pipeline.gradcheck import check_config, check_model, covering_rows
from pipeline.model import DeepLearningModel


def test_rows_of_a_single_class_give_a_consistent_softmax_gradient():
    # issue 13: with one class in the rows, the softmax unit's target was 0, so J = 0 but dJ/db_out = p - y = 1
    spec = DeepLearningModel(hidden=[2], distribution="multinomial", dtype="float64").spec
    X = np.random.default_rng(0).normal(size=(3, 2))
    assert check_model(spec, X, np.array(["a", "a", "a"])) < 1e-6
    assert check_model(spec, X, np.array(["a", "a", "a"]), classes=["a", "b", "c"]) < 1e-6


def test_covering_rows_takes_one_row_of_every_class_then_the_first_rows():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 0])
    np.testing.assert_array_equal(covering_rows(y, 4), [0, 1, 4, 6])
    np.testing.assert_array_equal(covering_rows(y, 2), [0, 4, 6])  # every class, even beyond n_samples
    np.testing.assert_array_equal(covering_rows(None, 3, n_rows=8), [0, 1, 2])


def test_supervised_mnist5k_config_passes_although_its_first_rows_are_all_zeros():
    # the first 10 rows of mnist5k are all class 0: `sweepnet gradcheck` printed "1.000e+00 FAILED"
    config = {"name": "m", "data": {"source": "mnist5k"}, "model": {"hidden": [3], "distribution": "multinomial"}}
    assert check_config(config) < 1e-6
