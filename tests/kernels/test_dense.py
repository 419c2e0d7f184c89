"""The dense forward and backward passes: against the NumPy reference, and by gradient checks.

Forward stacks and the full objective (losses, penalties, dropout, KL sparsity)
are compared with naive_dense.py on tiny shapes. Then float64 central-difference
gradient checks of ``loss_and_grad`` (UFLDL's recipe):

Every hidden activation x (output, loss) pair x penalty, with and without
dropout masks (fixed by seed and epoch), is checked with EPSILON = 1e-4 and
UFLDL's relative difference ||num - ana|| / ||num + ana||:

- five-point central difference: < 1e-9 (BOUND) everywhere;
- UFLDL's two-point central difference: < 5e-8 (BOUND_TWO_POINT). The looser
  bound is the formula's truncation error, not a kernel error:
  (f(t + e) - f(t - e)) / 2e is off by e^2 f3 / 6 (f3 the third derivative),
  about 1.7e-9 * f3 / f' at e = 1e-4. UFLDL's 1e-9 holds for sigmoid outputs
  near 0 (third derivative -1/8), but tanh's third derivative at 0 is -2 and
  the dropout scale 1 / (1 - ratio) multiplies the curvature: measured
  two-point values reach ~2.5e-8 here (they shrink 100x per 10x smaller e),
  while the five-point stencil (error e^4 f5 / 30) gives ~1e-11 or better,
  which shows the analytic gradient itself is right to that level.

Kinked cases (rectifier and maxout units, the absolute and huber losses, l1)
are checked at points chosen away from their kinks: every rectifier input,
maxout piece gap, absolute residual, |residual| - huber delta and |weight|
(with l1) is at least KINK_MARGIN = 5e-3 from its kink. A perturbation of at
most 2e-4 in one parameter moves any of these by far less than that, so the
objective is smooth on the whole stencil and the same bounds apply.
"""

import itertools

import numpy as np
import pytest

import naive_dense as naive
from kernels.layout import make_layout
from kernels.network import forward, hyper_vector, loss_and_grad

DTYPES = [np.float64, np.float32]
# float32 results are compared with the float64 reference
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
EPSILON = 1e-4
BOUND = 1e-9
BOUND_TWO_POINT = 5e-8
KINK_MARGIN = 5e-3
HIDDEN = ["sigmoid", "tanh", "rectifier", "maxout", "linear"]
OUTPUT_LOSSES = [("linear", "quadratic"), ("sigmoid", "cross_entropy"), ("softmax", "cross_entropy"),
                 ("softmax", "quadratic"), ("tanh", "huber"), ("linear", "absolute"), ("sigmoid", "quadratic")]
PENALTIES = {"none": {}, "l2": {"l2": 0.1}, "l1": {"l1": 0.05}, "elastic_net": {"l1": 0.05, "l2": 0.1}}
DROP = [0.2, 0.5, 0.3]  # input, then each hidden layer
HUBER_DELTA = 0.5


def _random_net(sizes, activations, seed, scale=0.7, dtype=np.float64):
    layout, n_params = make_layout(sizes, activations)
    rng = np.random.default_rng(seed)
    params = (scale * rng.standard_normal(n_params)).astype(dtype)
    return layout, params, rng


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


# --------------------------------------------------------------------------- objective against the reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden,out,loss", [(h, o, l) for h, (o, l) in
                         itertools.product(("sigmoid", "maxout", "rectifier"),
                                           [("softmax", "cross_entropy"), ("tanh", "huber")])])
def test_loss_and_grad_against_naive_backprop(hidden, out, loss, dtype):
    layout, params, rng = _random_net((3, 4, 3, 2), (hidden, "tanh", out), seed=9, dtype=dtype)
    X = rng.standard_normal((6, 3))
    Y = naive.targets(out, loss, rng, (6, 2))
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


# --------------------------------------------------------------------------- gradient checks
def _check_targets(out, loss, rng, shape):
    """Targets for the gradient checks: 0/1 labels for sigmoid cross-entropy, inside (-1, 1) for tanh."""
    if out == "softmax":
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    if out == "sigmoid":
        return rng.integers(0, 2, shape).astype(float) if loss == "cross_entropy" else rng.random(shape)
    if out == "tanh":
        return rng.uniform(-0.9, 0.9, shape)
    return 2 * rng.standard_normal(shape)


def _point(hidden, out, loss, penalty, dropout, m=5):
    """A kink-free point (params, layout, X, Y, drop) for this combination."""
    layout, n_params = make_layout((3, 4, 3, 2), (hidden, hidden, out))
    weights = naive.weight_entries(layout, n_params)
    drop = DROP if dropout else None
    l1 = PENALTIES[penalty].get("l1", 0.0)
    for trial in range(200):
        rng = np.random.default_rng([HIDDEN.index(hidden), trial])
        params = 0.5 * rng.standard_normal(n_params)
        # |w| >= 0.05 keeps l1 away from its kink at 0
        params[weights] = np.sign(params[weights]) * (0.05 + np.abs(params[weights]))
        X = rng.standard_normal((m, 3))
        Y = _check_targets(out, loss, rng, (m, 2))
        masks = naive.masks_for(layout, drop, 7, 3, np.arange(m)) if dropout else None
        if naive.kinks(params, layout, X, Y, loss, l1, HUBER_DELTA, masks) >= KINK_MARGIN:
            return params, layout, X, Y, drop
    raise RuntimeError("no kink-free point found")


def _relative_difference(params, layout, X, Y, loss, hp, drop):
    """Five-point relative difference; asserts the two-point one on the way."""
    def J(theta):
        return loss_and_grad(theta, layout, X, Y, loss, hp, drop, seed=7, epoch=3)[0]

    _, analytic = loss_and_grad(params, layout, X, Y, loss, hp, drop, seed=7, epoch=3)
    assert np.linalg.norm(analytic) > 1e-3  # a vanishing gradient would make the check vacuous
    two_point, five_point = naive.central_differences(J, params, EPSILON)
    assert naive.relative_difference(two_point, analytic) < BOUND_TWO_POINT
    return naive.relative_difference(five_point, analytic)


def test_ufldl_check_numerical_gradient_sanity():
    # UFLDL checkNumericalGradient: h(x) = x1^2 + 3 x1 x2 at (4, 10); grad = (2*4 + 3*10, 3*4) = (38, 12).
    # h is quadratic, so both stencils are exact up to round-off (~2e-12).
    def h(x):
        return x[0] ** 2 + 3 * x[0] * x[1]

    two_point, five_point = naive.central_differences(h, [4.0, 10.0], EPSILON)
    assert naive.relative_difference(two_point, np.array([38.0, 12.0])) < BOUND
    assert naive.relative_difference(five_point, np.array([38.0, 12.0])) < BOUND


@pytest.mark.parametrize("dropout", [False, True], ids=["nodrop", "dropout"])
@pytest.mark.parametrize("penalty", list(PENALTIES))
@pytest.mark.parametrize("out,loss", OUTPUT_LOSSES, ids=[f"{o}-{l}" for o, l in OUTPUT_LOSSES])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradient_check(hidden, out, loss, penalty, dropout):
    params, layout, X, Y, drop = _point(hidden, out, loss, penalty, dropout)
    hp = hyper_vector(huber_delta=HUBER_DELTA, **PENALTIES[penalty])
    assert _relative_difference(params, layout, X, Y, loss, hp, drop) < BOUND


@pytest.mark.parametrize("out,loss", [("sigmoid", "quadratic"), ("linear", "quadratic"), ("softmax", "cross_entropy")])
@pytest.mark.parametrize("extra", ["plain", "l2+dropout"])
def test_gradient_check_kl_sparsity(out, loss, extra):
    # Sparse-autoencoder objective: both hidden layers are sigmoid, so both get beta * sum_j KL(rho || rho_hat_j).
    params, layout, X, Y, drop = _point("sigmoid", out, loss, "l2", extra != "plain")
    l2 = 0.1 if extra != "plain" else 0.0
    hp = hyper_vector(sparsity_beta=3.0, sparsity_rho=0.1, l2=l2)
    J_with, _ = loss_and_grad(params, layout, X, Y, loss, hp, drop, seed=7, epoch=3)
    J_without, _ = loss_and_grad(params, layout, X, Y, loss, hyper_vector(l2=l2), drop, seed=7, epoch=3)
    assert J_with - J_without > 0.1  # the KL term is present and sizeable
    assert _relative_difference(params, layout, X, Y, loss, hp, drop) < BOUND


def test_a_kink_breaks_the_check():
    # The kink margin is not decoration: at z = 0 the rectifier's one-sided slopes
    # differ (0 and 1) and the central difference sees their average.
    layout, _ = make_layout((1, 1), ("rectifier",))
    params = np.array([1.0, 0.0])  # z = 1 * x + 0 with x = 0
    X, Y = np.array([[0.0]]), np.array([[-1.0]])
    assert naive.kinks(params, layout, X, Y, "quadratic") == 0.0
    _, analytic = loss_and_grad(params, layout, X, Y, "quadratic")
    numerical = naive.central_difference(lambda t: loss_and_grad(t, layout, X, Y, "quadratic")[0], params)
    assert naive.relative_difference(numerical, analytic) > 0.1


def test_a_wrong_gradient_fails_the_check():
    # Sensitivity: a 1e-6 relative error in one gradient entry is far above the bound.
    params, layout, X, Y, _ = _point("tanh", "softmax", "cross_entropy", "l2", False)
    hp = hyper_vector(l2=0.1)
    _, analytic = loss_and_grad(params, layout, X, Y, "cross_entropy", hp)
    numerical = naive.central_difference(lambda t: loss_and_grad(t, layout, X, Y, "cross_entropy", hp)[0],
                                         params, EPSILON, order=4)
    assert naive.relative_difference(numerical, analytic) < BOUND
    analytic[3] *= 1 + 1e-6
    assert naive.relative_difference(numerical, analytic) > BOUND
