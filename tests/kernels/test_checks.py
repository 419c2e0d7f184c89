"""The argument checks every public wrapper uses: what passes comes back C-contiguous; what fails names itself."""

import numpy as np
import pytest

from kernels.checks import (as_matrix, check_choice, check_drop, check_float_array, check_hp, check_int,
                            check_params, check_shape)
from kernels.layout import make_layout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_float_array_returns_a_contiguous_copy_only_when_needed(dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    assert check_float_array("x", x, ndim=2) is x
    strided = check_float_array("x", x[:, ::2], min_ndim=2)
    assert strided.flags.c_contiguous and strided.dtype == dtype
    np.testing.assert_array_equal(strided, x[:, ::2])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: check_float_array("W", [[1.0]]), TypeError, r"W must be a numpy.ndarray, got list; .*np.asarray\(W"),
    (lambda: check_float_array("W", np.ones(2, np.int32)), TypeError, r"W has dtype int32; .*W.astype"),
    (lambda: check_float_array("W", np.ones(2), ndim=2), ValueError, r"W is 1-dimensional with shape \(2,\) and "
                                                                       "must be 2-dimensional"),
    (lambda: check_float_array("x", np.ones(2), min_ndim=2), ValueError, "at least 2 dimensions"),
    (lambda: check_float_array("x", np.ones((0, 3))), ValueError, r"x is empty \(shape \(0, 3\)\)"),
    (lambda: check_int("pool", 2.0), TypeError, r"pool must be an int, got 2.0 \(float\)"),
    (lambda: check_int("pool", True), TypeError, "pool must be an int, got True"),
    (lambda: check_int("pool", 0), ValueError, "pool must be >= 1, got 0"),
    (lambda: check_choice("mode", "median", {"mean": 0, "max": 1}), ValueError,
     r"mode must be one of \['max', 'mean'\], got 'median'"),
    (lambda: check_choice("mode", 1, {"mean": 0}), ValueError, "mode must be one of"),
    (lambda: check_shape("input_shape", (4,)), ValueError, r"input_shape must be a tuple of >= 2 positive ints"),
    (lambda: check_shape("input_shape", (4, 0)), ValueError, "input_shape must be a tuple"),
    (lambda: as_matrix("X", np.zeros(3), np.float64), ValueError, r"X is 1-dimensional .*\.reshape\(-1, 1\)"),
    (lambda: as_matrix("Y", np.zeros((2, 3)), np.float64, 2), ValueError, "Y has 3 columns but the network expects 2"),
    (lambda: check_hp(np.zeros(3)), ValueError, r"hp has shape \(3,\); it must be the \(18,\) vector"),
])
def test_bad_input_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_passing_values_come_back_normalised():
    assert check_int("pool", np.int32(3)) == 3 and type(check_int("pool", np.int32(3))) is int
    assert check_int("n", 0, minimum=0) == 0
    assert check_choice("mode", "MAX", {"mean": 0, "max": 1}) == "max"
    assert check_shape("input_shape", [2, np.int64(3)]) == (2, 3)
    X = as_matrix("X", [[1, 2], [3, 4]], np.float32, 2)
    assert X.dtype == np.float32 and X.flags.c_contiguous and X.flags.writeable


def test_params_and_dropout_checks_follow_the_layout():
    layout, n_params = make_layout((3, 4, 2), ("tanh", "linear"))
    check_params(np.zeros(n_params), layout)
    with pytest.raises(TypeError, match="params has dtype int64"):
        check_params(np.zeros(n_params, np.int64), layout)
    with pytest.raises(ValueError, match=rf"params has shape \(3,\); the layout needs a flat vector of {n_params}"):
        check_params(np.zeros(3), layout)
    np.testing.assert_array_equal(check_drop(None, layout), [0.0, 0.0])
    np.testing.assert_array_equal(check_drop([0.5, 0.0], layout), [0.5, 0.0])
    with pytest.raises(ValueError, match=r"drop=\[0.5\] must hold one ratio in \[0, 1\) per layer input \(2 values"):
        check_drop([0.5], layout)
