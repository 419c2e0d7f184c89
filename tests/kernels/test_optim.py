"""Optimiser steps, worked by hand, and multi-step trajectories against NumPy formulas.

Single steps use a 1-1 linear net whose flat vector is theta = (w, b) and one
sample chosen so the gradient is exactly g = (0.5, -2.0):
x = -0.25, y = 3.75, theta = (1, 2) -> h = -0.25 + 2 = 1.75, r = h - y = -2,
dJ/dw = r x = 0.5, dJ/db = r = -2 (J = r^2 / 2 = 2). All of these are exact in binary.
"""

import numpy as np
import pytest

import naive_dense as naive
from kernels.layout import make_layout
from kernels.network import hyper_vector, train_epochs
from kernels.optim import momentum_at

LAYOUT_11, _ = make_layout((1, 1), ("linear",))
X1, Y1 = np.array([[-0.25]]), np.array([[3.75]])
THETA = np.array([1.0, 2.0])
G = np.array([0.5, -2.0])


def _one_step(optimizer, dtype=np.float64, state=None, **hp):
    params = THETA.astype(dtype)
    state = np.zeros((2, 2), dtype) if state is None else state.astype(dtype)
    counters = np.zeros(2)
    epoch_loss, finished = train_epochs(params, LAYOUT_11, X1, Y1, state, counters, epoch0=0, n_epochs=1,
                                        batch_size=1, loss="quadratic", optimizer=optimizer,
                                        hp=hyper_vector(**hp), drop=None, seed=0)
    assert finished == 1 and epoch_loss[0] == 2.0  # J = (-2)^2 / 2 before the step
    np.testing.assert_array_equal(counters, [1.0, 1.0])  # one sample seen, one step taken
    return params, state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hand_worked_gradient_descent_step_1_1_1_linear(dtype):
    # theta = (w1, b1, w2, b2) = (0.5, 0.1, -0.3, 0.2); x = 2, y = 1; rate 0.1
    layout, _ = make_layout((1, 1, 1), ("linear", "linear"))
    params = np.array([0.5, 0.1, -0.3, 0.2], dtype=dtype)
    state, counters = np.zeros((2, 4), dtype), np.zeros(2)
    epoch_loss, _ = train_epochs(params, layout, np.array([[2.0]]), np.array([[1.0]]), state, counters, epoch0=0,
                                 n_epochs=1, batch_size=1, loss="quadratic", optimizer="sgd",
                                 hp=hyper_vector(rate=0.1), drop=None, seed=0)
    # forward: z1 = 0.5 * 2 + 0.1 = 1.1 = a1;  h = -0.3 * 1.1 + 0.2 = -0.13
    # loss:    r = h - y = -1.13;  J = 1.13^2 / 2 = 0.63845
    # output:  delta2 = r = -1.13;  dW2 = delta2 * a1 = -1.243;  db2 = -1.13
    # hidden:  delta1 = w2 * delta2 = 0.339 (linear: f' = 1);  dW1 = delta1 * x = 0.678;  db1 = 0.339
    # step:    w1 = 0.5 - 0.1 * 0.678 = 0.4322;   b1 = 0.1 - 0.1 * 0.339 = 0.0661
    #          w2 = -0.3 + 0.1 * 1.243 = -0.1757;  b2 = 0.2 + 0.1 * 1.13 = 0.313
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(epoch_loss, [0.63845], rtol=rtol)
    np.testing.assert_allclose(params, [0.4322, 0.0661, -0.1757, 0.313], rtol=rtol)


def test_gradient_of_the_two_parameter_case():
    # guards the premise of every single-step test below: the gradient is exactly (0.5, -2)
    from kernels.network import loss_and_grad
    J, grad = loss_and_grad(THETA.copy(), LAYOUT_11, X1, Y1)
    assert J == 2.0
    np.testing.assert_array_equal(grad, G)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_step(dtype):
    params, _ = _one_step("sgd", dtype, rate=0.1)
    # theta - 0.1 g = (1 - 0.05, 2 + 0.2)
    np.testing.assert_allclose(params, [0.95, 2.2], rtol=1e-7)
    np.testing.assert_allclose(params, THETA - 0.1 * G, rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_momentum_step(dtype):
    v0 = np.array([[0.1, -0.2], [0.0, 0.0]])
    params, state = _one_step("sgd", dtype, state=v0, rate=0.1, momentum_start=0.9, momentum_stable=0.9)
    # v = mu v0 - rate g = (0.09 - 0.05, -0.18 + 0.2) = (0.04, 0.02);  theta + v = (1.04, 2.02)
    v = 0.9 * v0[0] - 0.1 * G
    np.testing.assert_allclose(state[0], [0.04, 0.02], rtol=1e-6)
    np.testing.assert_allclose(state[0], v, rtol=1e-6)
    np.testing.assert_allclose(params, [1.04, 2.02], rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nesterov_step(dtype):
    v0 = np.array([[0.1, -0.2], [0.0, 0.0]])
    params, state = _one_step("sgd", dtype, state=v0, rate=0.1, momentum_start=0.9, momentum_stable=0.9,
                              nesterov=1)
    # Bengio et al. (2013) form: v = mu v0 - rate g = (0.04, 0.02); theta += mu v - rate g
    #   w: 1 + 0.9 * 0.04 - 0.05 = 0.986;   b: 2 + 0.9 * 0.02 + 0.2 = 2.218
    np.testing.assert_allclose(state[0], [0.04, 0.02], rtol=1e-6)
    np.testing.assert_allclose(params, [0.986, 2.218], rtol=1e-7)
    v = 0.9 * v0[0] - 0.1 * G
    np.testing.assert_allclose(params, THETA + 0.9 * v - 0.1 * G, rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adadelta_step(dtype):
    params, state = _one_step("adadelta", dtype, rho=0.95, epsilon=1e-6)
    # Zeiler (2012), from zero state:
    # E[g^2] = 0.05 g^2 = (0.0125, 0.2)
    # dx = -sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g = -1e-3 / sqrt(0.012501) * 0.5 ~ -0.0044720,
    #                                                     -1e-3 / sqrt(0.200001) * -2 ~ +0.0044721
    # E[dx^2] = 0.05 dx^2 ~ (1.0e-6, 1.0e-6);  theta + dx ~ (0.995528, 2.004472)
    eg2 = 0.05 * G ** 2
    dx = -np.sqrt(0.0 + 1e-6) / np.sqrt(eg2 + 1e-6) * G
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(state[0], eg2, rtol=rtol)
    np.testing.assert_allclose(state[1], 0.05 * dx ** 2, rtol=rtol)
    np.testing.assert_allclose(params, THETA + dx, rtol=rtol)
    np.testing.assert_allclose(params, [0.995528, 2.004472], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_step(dtype):
    params, state = _one_step("adam", dtype, rate=0.1, beta1=0.9, beta2=0.999, epsilon=1e-8)
    # Kingma & Ba (2015), t = 1: m = 0.1 g = (0.05, -0.2); v = 0.001 g^2 = (0.00025, 0.004)
    # bias-corrected m_hat = g, v_hat = g^2, so the step is rate * g / (|g| + eps) ~ rate * sign(g):
    # theta ~ (1 - 0.1, 2 + 0.1) = (0.9, 2.1)
    m_hat, v_hat = (0.1 * G) / (1 - 0.9), (0.001 * G ** 2) / (1 - 0.999)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(state[0], 0.1 * G, rtol=rtol)
    np.testing.assert_allclose(state[1], 0.001 * G ** 2, rtol=rtol)
    np.testing.assert_allclose(params, THETA - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=rtol)
    np.testing.assert_allclose(params, [0.9, 2.1], rtol=1e-6)


def test_h2o_momentum_ramp():
    hp = hyper_vector(momentum_start=0.5, momentum_ramp=1000, momentum_stable=0.99)
    # linear from 0.5 at 0 samples to 0.99 at 1000 samples, then flat:
    # 250 samples: 0.5 + 0.49 * 0.25 = 0.6225;  500: 0.745
    for samples, want in [(0, 0.5), (250, 0.6225), (500, 0.745), (999, 0.5 + 0.49 * 0.999), (1000, 0.99),
                          (1e6, 0.99)]:
        assert momentum_at(hp, float(samples)) == pytest.approx(want, rel=1e-14)
        assert momentum_at(hp, float(samples)) == pytest.approx(naive.momentum(samples, 0.5, 1000, 0.99), rel=1e-14)
    assert momentum_at(hyper_vector(momentum_start=0.5, momentum_stable=0.9), 0.0) == 0.9  # no ramp: stable


def test_h2o_rate_annealing():
    # alpha_t = rate / (1 + rate_annealing * samples_seen_before_the_step): with rate 0.1, annealing 0.5
    # and batch 1, the three steps of one epoch use 0.1, 0.1 / 1.5, 0.1 / 2.
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((3, 1)), rng.standard_normal((3, 1))
    params, state, counters = THETA.copy(), np.zeros((2, 2)), np.zeros(2)
    train_epochs(params, LAYOUT_11, X, Y, state, counters, epoch0=0, n_epochs=1, batch_size=1, loss="quadratic",
                 optimizer="sgd", hp=hyper_vector(rate=0.1, rate_annealing=0.5), drop=None, seed=0, shuffle=False)
    theta = THETA.copy()
    for i, alpha in enumerate([0.1, 0.1 / 1.5, 0.1 / 2.0]):
        r = theta[0] * X[i, 0] + theta[1] - Y[i, 0]
        theta -= alpha * np.array([r * X[i, 0], r])
    np.testing.assert_allclose(params, theta, rtol=1e-14)
    np.testing.assert_array_equal(counters, [3.0, 3.0])


# --------------------------------------------------------------------------- trajectories
TRAJECTORIES = {
    "sgd": dict(optimizer="sgd", rate=0.05),
    "sgd_rate_decay_annealing": dict(optimizer="sgd", rate=0.05, rate_decay=0.5, rate_annealing=0.01),
    "momentum_ramp": dict(optimizer="sgd", rate=0.02, momentum_start=0.5, momentum_ramp=30, momentum_stable=0.9),
    "momentum_ramp_from_zero": dict(optimizer="sgd", rate=0.02, momentum_start=0.0, momentum_ramp=30,
                                    momentum_stable=0.9),
    "nesterov": dict(optimizer="sgd", rate=0.02, momentum_start=0.9, momentum_stable=0.9, nesterov=1),
    "adadelta": dict(optimizer="adadelta", rho=0.95, epsilon=1e-6),
    "adam": dict(optimizer="adam", rate=0.01, rate_annealing=0.001),
    "sgd_l1_l2_maxnorm": dict(optimizer="sgd", rate=0.05, l1=0.01, l2=0.1, max_w2=0.5),
}




@pytest.mark.parametrize("batch_size", [1, 3, 7])  # online, with a remainder (7 = 2 * 3 + 1), full batch
@pytest.mark.parametrize("name", list(TRAJECTORIES))
def test_trajectory_against_numpy(name, batch_size):
    options = dict(TRAJECTORIES[name])
    optimizer = options.pop("optimizer")
    layout, n_params = make_layout((3, 4, 2), ("tanh", "linear"))
    rng = np.random.default_rng(1)
    params = 0.5 * rng.standard_normal(n_params)
    X, Y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    want, want_loss = naive.train(params, layout, X, Y, n_epochs=4, batch_size=batch_size, loss="quadratic",
                                  optimizer=optimizer, nesterov=bool(options.pop("nesterov", 0)), **options)
    hp_options = {k: v for k, v in TRAJECTORIES[name].items() if k != "optimizer"}
    state, counters = np.zeros((2, n_params)), np.zeros(2)
    epoch_loss, finished = train_epochs(params, layout, X, Y, state, counters, epoch0=0, n_epochs=4,
                                        batch_size=batch_size, loss="quadratic", optimizer=optimizer,
                                        hp=hyper_vector(**hp_options), drop=None, seed=0, shuffle=False)
    assert finished == 4
    np.testing.assert_allclose(params, want, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(epoch_loss, want_loss, rtol=1e-11)
    steps = 4 * -(-7 // batch_size)
    np.testing.assert_array_equal(counters, [28.0, steps])
