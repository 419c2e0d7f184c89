"""Activations against the NumPy references: forward, backward, the scalar derivative, and bad input."""

import numpy as np
import pytest

import naive_dense as naive
from kernels.activations import (ACTIVATION_CODES, CONV_ACTIVATIONS, _activate_backward, _activate_row, _derivative,
                                 activate)

DTYPES = [np.float64, np.float32]
# float32 results are compared with the float64 reference
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
BATCH_WIDTH = [(1, 1), (1, 4), (3, 2), (5, 7)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "rectifier", "linear", "softmax", "maxout"])
@pytest.mark.parametrize("batch,width", BATCH_WIDTH)
def test_activation_forward(name, batch, width, dtype):
    pieces = 2 if name == "maxout" else 1
    rng = np.random.default_rng(batch * 10 + width)
    z = (3 * rng.standard_normal((batch, width * pieces))).astype(dtype)
    got = activate(name, z, pieces)
    assert got.dtype == dtype and got.shape == (batch, width)
    np.testing.assert_allclose(got, naive.activate(name, z.astype(np.float64), pieces), **TOL[dtype])


def test_softmax_is_stable_for_large_logits():
    z = np.array([[1000.0, 1000.0, -1000.0], [-800.0, -801.0, -802.0]])
    p = activate("softmax", z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "rectifier", "linear", "maxout"])
@pytest.mark.parametrize("batch,width", BATCH_WIDTH)
def test_activation_backward(name, batch, width, dtype):
    pieces = 2 if name == "maxout" else 1
    rng = np.random.default_rng(batch * 10 + width + 1)
    z = (3 * rng.standard_normal((batch, width * pieces))).astype(dtype)
    a = activate(name, z, pieces)
    da = rng.standard_normal((batch, width)).astype(dtype)
    dz = np.full_like(z, np.nan)
    _activate_backward(ACTIVATION_CODES[name], pieces, z, a, da, dz)
    want = naive.activate_backward(name, z.astype(np.float64), a.astype(np.float64), da.astype(np.float64), pieces)
    np.testing.assert_allclose(dz, want, **TOL[dtype])


def test_maxout_ties_route_the_gradient_to_the_first_piece():
    z = np.array([[1.0, 1.0, -2.0, 5.0]])
    a = activate("maxout", z, 2)
    np.testing.assert_array_equal(a, [[1.0, 5.0]])
    dz = np.empty_like(z)
    _activate_backward(ACTIVATION_CODES["maxout"], 2, z, a, np.array([[3.0, 4.0]]), dz)
    np.testing.assert_array_equal(dz, [[3.0, 0.0, 0.0, 4.0]])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "rectifier", "linear"])
def test_scalar_derivative_is_the_backward_of_a_unit_gradient(name):
    # the losses scale their delta by _derivative; it must be the same f' the span backward applies
    z = np.linspace(-3.0, 3.0, 13).reshape(1, -1)
    a = activate(name, z)
    dz = np.empty_like(z)
    _activate_backward(ACTIVATION_CODES[name], 1, z, a, np.ones_like(a), dz)
    got = [_derivative(ACTIVATION_CODES[name], z[0, j], a[0, j]) for j in range(z.shape[1])]
    np.testing.assert_allclose(got, dz[0], rtol=1e-15, atol=0)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", sorted(CONV_ACTIVATIONS))
def test_conv_row_forward_adds_the_bias_and_activates(name, fast):
    # convolution's row forward uses the same codes as the dense layers; float32 "fast" has ~2e-6 rel. error
    dtype = np.float32 if fast else np.float64
    row = np.linspace(-4.0, 4.0, 17).astype(dtype)
    want = naive.activate("linear" if name == "identity" else name, row.astype(np.float64)[None, :] + 0.25)[0]
    _activate_row(row, dtype(0.25), CONV_ACTIVATIONS[name], fast, np.empty(row.size, np.int32))
    np.testing.assert_allclose(row, want, rtol=1e-5 if fast else 1e-14, atol=1e-6 if fast else 1e-15)
    assert CONV_ACTIVATIONS[name] == ACTIVATION_CODES["linear" if name == "identity" else name]


def test_activate_shape_errors():
    with pytest.raises(ValueError, match="z is 1-dimensional and must be 2-dimensional"):
        activate("tanh", np.zeros(3))
    with pytest.raises(ValueError, match="z has 3 columns, not a multiple of pieces=2"):
        activate("maxout", np.zeros((1, 3)), pieces=2)


def test_activate_unknown_name():
    with pytest.raises(ValueError, match=r"activation 'relu' is unknown; use one of \['linear', 'maxout'"):
        activate("relu", np.zeros((1, 2)))
