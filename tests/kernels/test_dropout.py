"""Inverted-dropout masks and the seeded shuffle: ratio, values, determinism, bad ratios, never at prediction."""

import numpy as np
import pytest

import naive_dense as naive
from kernels.dropout import _shuffle, dropout_mask
from kernels.layout import make_layout
from kernels.network import forward, hyper_vector, loss_and_grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.5, 0.8])
def test_ratio_respected_within_a_binomial_bound(ratio, dtype):
    mask = dropout_mask((400, 50), ratio, seed=3, epoch=1, layer=2, dtype=dtype)
    n = mask.size
    dropped = int((mask == 0).sum())
    # dropped ~ Binomial(n, ratio): 5 standard deviations
    assert abs(dropped - n * ratio) <= 5 * np.sqrt(n * ratio * (1 - ratio))
    # per column too (each unit is dropped at the same rate): 5 sd of Binomial(400, ratio)
    per_unit = (mask == 0).sum(axis=0)
    assert np.abs(per_unit - 400 * ratio).max() <= 5 * np.sqrt(400 * ratio * (1 - ratio))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75])
def test_values_are_zero_or_inverse_keep(ratio, dtype):
    mask = dropout_mask((64, 33), ratio, seed=1, dtype=dtype)
    assert mask.dtype == dtype
    keep = dtype(1.0 / (1.0 - ratio))
    assert set(np.unique(mask)) <= {dtype(0.0), keep}
    if ratio == 0.0:
        np.testing.assert_array_equal(mask, 1.0)
    # inverted dropout keeps the expectation: mean close to 1
    assert abs(mask.astype(np.float64).mean() - 1.0) < 5 * np.sqrt(ratio / (1 - ratio) / mask.size) + 1e-12


@pytest.mark.parametrize("ratio", [1.0, -0.01, 1.5])
def test_dropout_mask_ratio_out_of_range(ratio):
    with pytest.raises(ValueError, match=rf"ratio={ratio} must be in \[0, 1\)"):
        dropout_mask((2, 2), ratio, seed=0)


def test_deterministic_for_the_same_key_and_different_otherwise():
    base = dropout_mask((20, 30), 0.5, seed=9, epoch=4, layer=1)
    np.testing.assert_array_equal(base, dropout_mask((20, 30), 0.5, seed=9, epoch=4, layer=1))
    for other in [dict(seed=10, epoch=4, layer=1), dict(seed=9, epoch=5, layer=1), dict(seed=9, epoch=4, layer=2)]:
        different = dropout_mask((20, 30), 0.5, **other)
        # independent masks agree on about half the entries; identical ones on all 600
        assert (different == base).mean() < 0.65


def test_keyed_by_global_row_not_position_in_batch():
    full = dropout_mask((12, 7), 0.4, seed=2, epoch=3, layer=0)
    rows = np.array([11, 0, 5])
    np.testing.assert_array_equal(dropout_mask((3, 7), 0.4, seed=2, epoch=3, layer=0, rows=rows), full[rows])


def test_rows_and_units_are_not_correlated():
    mask = dropout_mask((300, 300), 0.5, seed=5) > 0
    # neighbouring rows and columns agree about half the time (independent draws)
    assert abs((mask[1:] == mask[:-1]).mean() - 0.5) < 0.02
    assert abs((mask[:, 1:] == mask[:, :-1]).mean() - 0.5) < 0.02


def test_shuffle_is_a_seeded_permutation_that_changes_with_the_epoch():
    orders = []
    for epoch in (0, 0, 1):
        order = np.arange(50)
        _shuffle(order, np.uint64(7), epoch)
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
        orders.append(order)
    np.testing.assert_array_equal(orders[0], orders[1])
    assert (orders[0] != orders[2]).mean() > 0.5
    assert (orders[0] != np.arange(50)).mean() > 0.5


def _net():
    layout, n_params = make_layout((6, 8, 5, 3), ("rectifier", "tanh", "softmax"))
    rng = np.random.default_rng(0)
    return layout, 0.5 * rng.standard_normal(n_params), rng.standard_normal((9, 6))


def test_training_objective_uses_the_masks_of_the_epoch():
    layout, params, X = _net()
    Y = np.eye(3)[np.arange(9) % 3]
    drop = [0.3, 0.5, 0.2]
    J, _ = loss_and_grad(params, layout, X, Y, "cross_entropy", hyper_vector(), drop, seed=4, epoch=6)
    masks = naive.masks_for(layout, drop, 4, 6, np.arange(9))
    J_ref, _ = naive.loss_and_grad(params, layout, X, Y, "cross_entropy", masks=masks)
    assert J == pytest.approx(J_ref, rel=1e-12)
    J_plain, _ = loss_and_grad(params, layout, X, Y, "cross_entropy")
    J_other_epoch, _ = loss_and_grad(params, layout, X, Y, "cross_entropy", hyper_vector(), drop, seed=4, epoch=7)
    assert J != pytest.approx(J_plain) and J != pytest.approx(J_other_epoch)


def test_forward_never_drops():
    layout, params, X = _net()
    # forward has no dropout argument at all; it must equal the mask-free reference
    np.testing.assert_allclose(forward(params, layout, X), naive.forward(params, layout, X)[-1][2], rtol=1e-12)
    np.testing.assert_array_equal(forward(params, layout, X), forward(params, layout, X))
