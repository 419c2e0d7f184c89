"""Weight penalties and max-norm against the NumPy reference; biases are never penalised."""

import numpy as np
import pytest

import naive_dense as naive
from kernels.layout import bias_view, make_layout, weight_mask, weight_view
from kernels.network import hyper_vector, loss_and_grad
from kernels.penalties import _max_norm

DTYPES = [np.float64, np.float32]


def _random_net(sizes, activations, seed, scale=0.7, dtype=np.float64):
    layout, n_params = make_layout(sizes, activations)
    rng = np.random.default_rng(seed)
    params = (scale * rng.standard_normal(n_params)).astype(dtype)
    return layout, params, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1,l2", [(0.0, 0.3), (0.2, 0.0), (0.2, 0.3)])
def test_penalty_value_and_gradient(l1, l2, dtype):
    layout, params, rng = _random_net((3, 4, 2), ("tanh", "linear"), seed=3, dtype=dtype)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    J0, g0 = loss_and_grad(params, layout, X, Y, "quadratic")
    J1, g1 = loss_and_grad(params, layout, X, Y, "quadratic", hyper_vector(l1=l1, l2=l2))
    value, grad = naive.penalty(params, layout, l1, l2)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(J1 - J0, value, **tol)
    np.testing.assert_allclose(g1.astype(np.float64) - g0, grad, **tol)


def test_biases_are_never_penalised():
    layout, params, rng = _random_net((3, 4, 2), ("tanh", "linear"), seed=4)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    hp = hyper_vector(l1=0.5, l2=2.0)
    biases = ~weight_mask(layout, params.shape[0])
    _, g_plain = loss_and_grad(params, layout, X, Y, "quadratic")
    J, g_pen = loss_and_grad(params, layout, X, Y, "quadratic", hp)
    np.testing.assert_array_equal(g_pen[biases], g_plain[biases])
    # the penalty value does not move when only biases grow
    shifted = params.copy()
    shifted[biases] += 10.0
    J_shift, _ = loss_and_grad(shifted, layout, X, Y, "quadratic", hp)
    J_shift0, _ = loss_and_grad(shifted, layout, X, Y, "quadratic")
    J0, _ = loss_and_grad(params, layout, X, Y, "quadratic")
    assert J_shift - J_shift0 == pytest.approx(J - J0, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_rescales_only_rows_over_the_bound(dtype):
    layout, n_params = make_layout((3, 2, 2), ("maxout", "linear"))
    rng = np.random.default_rng(5)
    params = rng.standard_normal(n_params)
    W0 = weight_view(params, layout, 0)
    W0[0] = [3.0, 4.0, 0.0]  # ||w||^2 = 25 > 4: rescaled to norm^2 exactly 4
    W0[1] = [0.1, 0.2, 0.3]  # 0.14 < 4: untouched
    before = params.astype(dtype)
    after = before.copy()
    _max_norm(after, layout, 4.0)
    want = naive.max_norm(before, layout, 4.0)
    np.testing.assert_allclose(after, want, rtol=1e-6 if dtype == np.float32 else 1e-15)
    for layer in range(2):
        sq = (weight_view(after.astype(np.float64), layout, layer) ** 2).sum(axis=1)
        big = (weight_view(before.astype(np.float64), layout, layer) ** 2).sum(axis=1) > 4.0
        np.testing.assert_allclose(sq[big], 4.0, rtol=1e-6 if dtype == np.float32 else 1e-14)
        np.testing.assert_array_equal(weight_view(after, layout, layer)[~big], weight_view(before, layout, layer)[~big])
        np.testing.assert_array_equal(bias_view(after, layout, layer), bias_view(before, layout, layer))
    np.testing.assert_allclose(weight_view(after, layout, 0)[0], [1.2, 1.6, 0.0], rtol=1e-6)


def test_max_norm_infinite_is_a_no_op():
    layout, params, _ = _random_net((3, 4, 2), ("tanh", "linear"), seed=6, scale=50.0)
    after = params.copy()
    _max_norm(after, layout, np.inf)
    np.testing.assert_array_equal(after, params)
