"""Each dense kernel against the slow NumPy references in naive_dense.py, on tiny shapes."""

import itertools

import numpy as np
import pytest

import naive_dense as naive
from kernels.activations import ACTIVATION_CODES, _activate_backward, activate
from kernels.layout import bias_view, make_layout, weight_mask, weight_view
from kernels.network import forward, hyper_vector, loss_and_grad
from kernels.penalties import _max_norm

DTYPES = [np.float64, np.float32]
# float32 results are compared with the float64 reference
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
BATCH_WIDTH = [(1, 1), (1, 4), (3, 2), (5, 7)]


def _random_net(sizes, activations, seed, scale=0.7, dtype=np.float64):
    layout, n_params = make_layout(sizes, activations)
    rng = np.random.default_rng(seed)
    params = (scale * rng.standard_normal(n_params)).astype(dtype)
    return layout, params, rng


# --------------------------------------------------------------------------- layout
def test_layout_views_cover_the_vector_once():
    layout, n_params = make_layout((3, 4, 2), ("maxout", "softmax"))
    # maxout doubles the rows: (8 x 3) + 8, then (2 x 4) + 2
    assert n_params == 24 + 8 + 8 + 2
    params = np.arange(n_params, dtype=np.float64)
    seen = np.concatenate([np.r_[weight_view(params, layout, k).ravel(), bias_view(params, layout, k)]
                           for k in range(2)])
    np.testing.assert_array_equal(np.sort(seen), params)
    assert weight_view(params, layout, 0).shape == (8, 3)
    assert weight_view(params, layout, 1).shape == (2, 4)
    np.testing.assert_array_equal(weight_mask(layout, n_params), naive.weight_entries(layout, n_params))


# --------------------------------------------------------------------------- activations
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


# --------------------------------------------------------------------------- losses
# A single layer with W = I and b = 0 makes z = X, so the gradient of
# J = (1/m) sum_i loss_i is gW = delta.T @ X / m and gb = sum_i delta_i / m,
# with delta = dloss_i/dz_i: this checks every loss value and delta through the
# public API (one compiled signature per dtype).
OUTPUT_LOSSES = [("linear", "quadratic"), ("sigmoid", "cross_entropy"), ("softmax", "cross_entropy"),
                 ("softmax", "quadratic"), ("tanh", "huber"), ("linear", "absolute"), ("sigmoid", "quadratic"),
                 ("linear", "huber"), ("tanh", "quadratic"), ("rectifier", "quadratic")]


def _targets(act, loss, rng, shape):
    if act == "softmax":
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    if act == "sigmoid" and loss == "cross_entropy":
        return rng.random(shape).round(1)  # soft labels in [0, 1] are valid too
    return 2 * rng.standard_normal(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,loss", OUTPUT_LOSSES)
@pytest.mark.parametrize("batch,width", [(1, 2), (4, 3)])
def test_loss_value_and_delta(act, loss, batch, width, dtype):
    rng = np.random.default_rng(batch + 7 * width)
    layout, n_params = make_layout((width, width), (act,))
    params = naive.pack([(np.eye(width), np.zeros(width))], layout, n_params).astype(dtype)
    z = 2 * rng.standard_normal((batch, width))
    y = _targets(act, loss, rng, z.shape)
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


# --------------------------------------------------------------------------- penalties
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


# --------------------------------------------------------------------------- forward of a stack
STACKS = [((2, 2, 1), ("tanh", "tanh")), ((3, 5, 4, 2), ("rectifier", "maxout", "softmax")),
          ((4, 3, 4), ("sigmoid", "sigmoid")), ((1, 6, 3), ("maxout", "linear")),
          ((5, 4, 3, 2, 3), ("linear", "tanh", "rectifier", "softmax"))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts", STACKS)
@pytest.mark.parametrize("m", [1, 6])
def test_forward_stack(sizes, acts, m, dtype):
    layout, params, rng = _random_net(sizes, acts, seed=len(sizes) + m, dtype=dtype)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    saved = naive.forward(params, layout, X)
    for layer in range(len(acts)):
        got = forward(params, layout, X, layer=layer)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, saved[layer][2], **TOL[dtype])
    np.testing.assert_array_equal(forward(params, layout, X), forward(params, layout, X, layer=-1))


def test_forward_in_chunks_with_a_remainder_equals_one_chunk():
    layout, params, rng = _random_net((3, 5, 4, 2), ("rectifier", "maxout", "softmax"), seed=8)
    X = rng.standard_normal((11, 3))
    np.testing.assert_array_equal(forward(params, layout, X, batch_size=4), forward(params, layout, X))
    assert forward(params, layout, X[:0]).shape == (0, 2)


# --------------------------------------------------------------------------- objective
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden,out,loss", [(h, o, l) for h, (o, l) in
                         itertools.product(("sigmoid", "maxout", "rectifier"),
                                           [("softmax", "cross_entropy"), ("tanh", "huber")])])
def test_loss_and_grad_against_naive_backprop(hidden, out, loss, dtype):
    layout, params, rng = _random_net((3, 4, 3, 2), (hidden, "tanh", out), seed=9, dtype=dtype)
    X = rng.standard_normal((6, 3))
    Y = _targets(out, loss, rng, (6, 2))
    drop = [0.2, 0.5, 0.3]
    hp = hyper_vector(l1=0.01, l2=0.1, huber_delta=0.5)
    J, grad = loss_and_grad(params, layout, X, Y, loss, hp, drop, seed=11, epoch=2)
    masks = naive.masks_for(layout, drop, 11, 2, np.arange(6))
    J_ref, g_ref = naive.loss_and_grad(params, layout, X, Y, loss, l1=0.01, l2=0.1, huber_delta=0.5, masks=masks)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(J, J_ref, **tol)
    np.testing.assert_allclose(grad, g_ref, **tol)


def test_kl_sparsity_value_and_gradient_against_naive():
    layout, params, rng = _random_net((4, 3, 4), ("sigmoid", "sigmoid"), seed=10)
    X = rng.random((7, 4))
    hp = hyper_vector(sparsity_beta=3.0, sparsity_rho=0.1, l2=1e-3)
    J, grad = loss_and_grad(params, layout, X, X, "quadratic", hp)
    J_ref, g_ref = naive.loss_and_grad(params, layout, X, X, "quadratic", l2=1e-3, beta=3.0, rho=0.1)
    J_plain, _ = loss_and_grad(params, layout, X, X, "quadratic", hyper_vector(l2=1e-3))
    assert J - J_plain > 0.01  # the KL term is really there
    np.testing.assert_allclose(J, J_ref, rtol=1e-12)
    np.testing.assert_allclose(grad, g_ref, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- reusable workspace (L-BFGS)
@pytest.mark.parametrize("drop", [None, [0.2, 0.5, 0.0]])
def test_reused_workspace_gives_the_same_objective(drop):
    from kernels.network import make_workspace
    layout, params, rng = _random_net((3, 4, 3, 2), ("rectifier", "tanh", "softmax"), seed=12)
    X = rng.standard_normal((6, 3))
    Y = _targets("softmax", "cross_entropy", rng, (6, 2))
    hp = hyper_vector(l2=0.1)
    workspace = make_workspace(layout, 6, np.float64, drop)
    workspace[:] = np.nan  # stale contents must never leak into a result
    for theta in (params, 0.5 * params, params):
        fresh = loss_and_grad(theta, layout, X, Y, "cross_entropy", hp, drop, seed=3, epoch=1)
        reused = loss_and_grad(theta, layout, X, Y, "cross_entropy", hp, drop, seed=3, epoch=1, workspace=workspace)
        assert fresh[0] == reused[0]
        np.testing.assert_array_equal(fresh[1], reused[1])


def test_workspace_for_another_shape_or_dtype_is_refused():
    from kernels.network import make_workspace
    layout, params, rng = _random_net((3, 4, 2), ("tanh", "linear"), seed=13)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    for wrong in (make_workspace(layout, 4, np.float64), make_workspace(layout, 5, np.float32)):
        with pytest.raises(ValueError, match=r"workspace was made for another shape or dtype.*make_workspace\("):
            loss_and_grad(params, layout, X, Y, workspace=wrong)
