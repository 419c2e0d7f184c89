"""Output losses: each value and output delta against the NumPy reference, and saturation."""

import numpy as np
import pytest

import naive_dense as naive
from kernels.layout import make_layout
from kernels.network import hyper_vector, loss_and_grad

DTYPES = [np.float64, np.float32]


# A single layer with W = I and b = 0 makes z = X, so the gradient of
# J = (1/m) sum_i loss_i is gW = delta.T @ X / m and gb = sum_i delta_i / m,
# with delta = dloss_i/dz_i: this checks every loss value and delta through the
# public API (one compiled signature per dtype).
OUTPUT_LOSSES = [("linear", "quadratic"), ("sigmoid", "cross_entropy"), ("softmax", "cross_entropy"),
                 ("softmax", "quadratic"), ("tanh", "huber"), ("linear", "absolute"), ("sigmoid", "quadratic"),
                 ("linear", "huber"), ("tanh", "quadratic"), ("rectifier", "quadratic")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,loss", OUTPUT_LOSSES)
@pytest.mark.parametrize("batch,width", [(1, 2), (4, 3)])
def test_loss_value_and_delta(act, loss, batch, width, dtype):
    rng = np.random.default_rng(batch + 7 * width)
    layout, n_params = make_layout((width, width), (act,))
    params = naive.pack([(np.eye(width), np.zeros(width))], layout, n_params).astype(dtype)
    z = 2 * rng.standard_normal((batch, width))
    y = naive.targets(act, loss, rng, z.shape)
    hp = hyper_vector(huber_delta=0.7)
    J, grad = loss_and_grad(params, layout, z.astype(dtype), y.astype(dtype), loss, hp)
    h = naive.activate(act, z)
    values, delta = naive.output_loss(loss, act, z, h, y, huber_delta=0.7)
    want = naive.pack([(delta.T @ z / batch, delta.sum(axis=0) / batch)], layout, n_params)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(J, values.mean(), **tol)
    np.testing.assert_allclose(grad, want, **tol)


def test_cross_entropy_is_finite_for_saturated_outputs():
    layout, n_params = make_layout((2, 2), ("sigmoid",))
    params = naive.pack([(np.eye(2), np.zeros(2))], layout, n_params)
    z = np.array([[800.0, -800.0]])
    J, grad = loss_and_grad(params, layout, z, np.array([[0.0, 1.0]]), "cross_entropy")
    assert J == pytest.approx(1600.0)  # -log sigmoid(-800) - log sigmoid(-800), from the logits
    assert np.isfinite(grad).all()
