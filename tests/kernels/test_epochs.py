"""The per-epoch pieces both training drivers share: the sample order and the finiteness check."""

import numpy as np
import pytest

from kernels.dropout import _shuffle
from kernels.epochs import _all_finite, _epoch_order


def test_epoch_order_resets_then_shuffles_by_seed_and_epoch():
    # whatever order the last epoch left, the next one starts again from 0..m-1: the order is a function of the key
    for start in (np.arange(9), np.arange(9)[::-1].copy()):
        order = start.copy()
        _epoch_order(order, True, np.uint64(7), 3)
        want = np.arange(9)
        _shuffle(want, np.uint64(7), 3)
        np.testing.assert_array_equal(order, want)
    assert (want != np.arange(9)).any()


def test_epoch_order_without_shuffling_leaves_the_order_alone():
    order = np.arange(6)
    _epoch_order(order, False, np.uint64(7), 3)
    np.testing.assert_array_equal(order, np.arange(6))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite(bad, dtype):
    values = np.linspace(-1e30, 1e30, 5).astype(dtype)
    assert _all_finite(values)
    assert _all_finite(values[:0])
    values[3] = bad
    assert not _all_finite(values)
