"""Float64 central-difference gradient checks of ``loss_and_grad`` (UFLDL's recipe).

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

import numpy as np
import pytest

import naive_dense as naive
from kernels.layout import make_layout
from kernels.network import hyper_vector, loss_and_grad

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


def _targets(out, loss, rng, shape):
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
        Y = _targets(out, loss, rng, (m, 2))
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
