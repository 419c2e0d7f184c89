import itertools

import numpy as np
import pytest

import naive_conv as naive
from kernels.pool import (max_pool2d_backward, max_pool2d_with_argmax, mean_pool2d_backward,
                          pool2d, pool_output_shape)

GRID = [(h, w, pool, stride, rem)
        for h, w in [(1, 1), (3, 5), (6, 4), (7, 7)]
        for pool, stride in [(1, None), (2, None), (3, None), (2, 1), (3, 2)]
        for rem in ("drop", "partial")
        if rem == "partial" or (h >= pool and w >= pool)]


@pytest.mark.parametrize("h,w,pool,stride,rem", GRID)
@pytest.mark.parametrize("mode", ["mean", "max"])
def test_forward_matches_naive(h, w, pool, stride, rem, mode):
    rng = np.random.default_rng(h * 100 + w)
    x = rng.standard_normal((2, 3, h, w))
    want = naive.pool(x, pool, stride, mode, rem)
    np.testing.assert_allclose(pool2d(x, pool, stride, mode, rem), want, rtol=1e-12)
    got32 = pool2d(x.astype(np.float32), pool, stride, mode, rem, parallel=False)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-6)
    if mode == "max":
        out, _ = max_pool2d_with_argmax(x, pool, stride, rem)
        np.testing.assert_array_equal(out, want)


def test_ufldl_shape_and_remainder():
    # 57 = 3 * 19 exactly: no remainder; 58 drops one row/column or keeps a 1-pixel window.
    assert pool_output_shape(57, 57, 19) == (3, 3)
    assert pool_output_shape(58, 58, 19) == (3, 3)
    assert pool_output_shape(58, 58, 19, remainder="partial") == (4, 4)
    x = np.ones((1, 58, 58))
    x[0, 57, :] = 100.0  # the dropped row
    assert pool2d(x, 19)[0, 2, 2] == 1.0
    partial = pool2d(x, 19, remainder="partial")
    assert partial[0, 3, 0] == 100.0  # the 1x19 window holds only the last row
    assert partial[0, 3, 3] == 100.0  # a 1x1 corner window


def test_leading_shape_kept_and_input_not_mutated():
    x = np.random.default_rng(0).random((2, 3, 4, 8, 8)).astype(np.float32)
    before = x.copy()
    assert pool2d(x, 4).shape == (2, 3, 4, 2, 2)
    assert pool2d(x, 3, stride=1, mode="max").shape == (2, 3, 4, 6, 6)
    np.testing.assert_array_equal(x, before)


def test_parallel_equals_serial():
    x = np.random.default_rng(1).random((5, 7, 19, 23))
    for mode in ("mean", "max"):
        np.testing.assert_array_equal(pool2d(x, 4, 3, mode, parallel=True),
                                      pool2d(x, 4, 3, mode, parallel=False))


def test_argmax_ties_go_to_first_in_row_major_order():
    x = np.zeros((1, 4, 4))
    x[0, 1, 1] = x[0, 0, 1] = 5.0
    out, idx = max_pool2d_with_argmax(x, 2)
    assert out[0, 0, 0] == 5.0 and idx[0, 0, 0] == 1  # (0, 1) before (1, 1)
    assert idx[0, 1, 1] == 2 * 4 + 2  # all zeros: first pixel of the window


@pytest.mark.parametrize("pool,stride,rem", [(2, None, "drop"), (3, 2, "partial"), (2, 1, "drop")])
def test_mean_backward_numerical(pool, stride, rem):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 7))
    R = rng.standard_normal(pool2d(x, pool, stride, "mean", rem).shape)
    num = naive.numerical_gradient(lambda: float(np.sum(R * pool2d(x, pool, stride, "mean", rem))), x)
    ana = mean_pool2d_backward(R, x.shape, pool, stride, rem)
    assert naive.rel_diff(num, ana) < 1e-9


@pytest.mark.parametrize("pool,stride,rem", [(2, None, "drop"), (3, 2, "partial"), (2, 1, "drop")])
def test_max_backward_numerical(pool, stride, rem):
    rng = np.random.default_rng(3)
    x = rng.permutation(70).reshape(2, 5, 7) * 0.1  # distinct values: max is differentiable
    out, idx = max_pool2d_with_argmax(x, pool, stride, rem)
    R = rng.standard_normal(out.shape)
    num = naive.numerical_gradient(
        lambda: float(np.sum(R * max_pool2d_with_argmax(x, pool, stride, rem)[0])), x)
    ana = max_pool2d_backward(R, idx, x.shape)
    assert naive.rel_diff(num, ana) < 1e-9


@pytest.mark.parametrize("call,exc,match", [
    (lambda: pool2d([[1.0]], 1), TypeError, "x must be a numpy.ndarray"),
    (lambda: pool2d(np.ones((2, 2), np.int64), 1), TypeError, "dtype int64"),
    (lambda: pool2d(np.ones(4), 1), ValueError, "at least 2 dimensions"),
    (lambda: pool2d(np.ones((3, 3)), 4), ValueError, "pool=4 is larger than the map size 3"),
    (lambda: pool2d(np.ones((3, 3)), 0), ValueError, "pool must be >= 1, got 0"),
    (lambda: pool2d(np.ones((3, 3)), 1.5), TypeError, "pool must be an int"),
    (lambda: pool2d(np.ones((3, 3)), 1, mode="median"), ValueError, "mode must be one of"),
    (lambda: pool2d(np.ones((3, 3)), 1, remainder="pad"), ValueError, "remainder must be one of"),
    (lambda: mean_pool2d_backward(np.ones((1, 2)), (4, 4), 2), ValueError, "grad_out has shape"),
    (lambda: max_pool2d_backward(np.ones((2, 2)), np.zeros((2, 2)), (4, 4)), TypeError, "int64"),
    (lambda: max_pool2d_backward(np.ones((2, 2)), np.full((2, 2), 16), (4, 4)), ValueError,
     "outside"),
])
def test_bad_input_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_grid_covers_remainders():
    # sanity on the grid itself: both remainder policies and overlapping strides are exercised
    combos = {(rem, stride is not None) for _, _, _, stride, rem in GRID}
    assert combos == set(itertools.product(("drop", "partial"), (False, True)))
