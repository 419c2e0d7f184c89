"""Optimiser steps over the flat parameter vector.

One loop over the vector per step; per-layer learning rates come from the
layout (h2o's ``rate_decay``: layer N uses rate · decay^(N−1)).

- SGD : rate annealing α_t = rate / (1 + rate_annealing · samples), momentum
  ramped linearly from momentum_start to momentum_stable over momentum_ramp
  samples (h2o), optional Nesterov. With zero momentum this is the lab's
  W ← W − α ∂J/∂W.
- ADADELTA (Zeiler 2012; h2o's default): rho, epsilon.
- Adam (Kingma & Ba 2015): rate, beta1, beta2, epsilon.

State rows: SGD uses state[0] (velocity); ADADELTA state[0] = E[g²],
state[1] = E[Δ²]; Adam state[0] = m, state[1] = v. ``counters`` holds
(samples seen, steps taken) as float64.
"""

import math

from kernels import hyper
from kernels._jit import inline, serial

SGD, ADADELTA, ADAM = range(3)

OPTIMIZER_CODES = {"sgd": SGD, "adadelta": ADADELTA, "adam": ADAM}


@serial
def momentum_at(hp, samples):
    """h2o's momentum schedule after ``samples`` training samples."""
    start = hp[hyper.MOMENTUM_START]
    ramp = hp[hyper.MOMENTUM_RAMP]
    stable = hp[hyper.MOMENTUM_STABLE]
    if ramp <= 0.0 or samples >= ramp:
        return stable
    return start + (stable - start) * samples / ramp


@inline
def _sgd(params, grad, velocity, rate, mom, nesterov):
    # The velocity is kept even at zero momentum: h2o's ramp starts at 0.
    # Loops run over whole (sliced) vectors: bounds read from the layout table
    # kept LLVM from vectorising (measured 5x slower).
    if nesterov:
        keep, push = -mom, 1 + mom
        for k in range(params.shape[0]):
            old = velocity[k]
            new = mom * old - rate * grad[k]
            velocity[k] = new
            params[k] += keep * old + push * new
    else:
        for k in range(params.shape[0]):
            new = mom * velocity[k] - rate * grad[k]
            velocity[k] = new
            params[k] += new


@serial
def _adadelta(params, grad, eg2, edx2, rho, one_minus_rho, eps):
    for k in range(params.shape[0]):
        g = grad[k]
        eg2[k] = rho * eg2[k] + one_minus_rho * g * g
        dx = -math.sqrt(edx2[k] + eps) / math.sqrt(eg2[k] + eps) * g
        edx2[k] = rho * edx2[k] + one_minus_rho * dx * dx
        params[k] += dx


@serial
def _adam(params, grad, m1, m2, rate, beta1, beta2, eps, inv_c1, inv_c2, one_minus_beta1, one_minus_beta2):
    for k in range(params.shape[0]):
        g = grad[k]
        m1[k] = beta1 * m1[k] + one_minus_beta1 * g
        m2[k] = beta2 * m2[k] + one_minus_beta2 * g * g
        params[k] -= rate * (m1[k] * inv_c1) / (math.sqrt(m2[k] * inv_c2) + eps)


@serial
def _step(opt_code, params, grad, state, counters, hp, layout, batch, s):
    """Apply one optimiser step in place, after a batch of ``batch`` samples.

    ``s`` is a scratch vector of the parameters' dtype (length >= 8): scalars
    are cast into it first so float32 loops stay in float32 and vectorise;
    1 - beta is formed in float64 before the cast.
    """
    samples = counters[0]
    counters[0] += batch
    counters[1] += 1.0
    if opt_code == ADADELTA:
        s[0] = hp[hyper.RHO]
        s[1] = 1.0 - hp[hyper.RHO]
        s[2] = hp[hyper.EPSILON]
        _adadelta(params, grad, state[0], state[1], s[0], s[1], s[2])
        return
    s[0] = hp[hyper.RATE] / (1.0 + hp[hyper.RATE_ANNEALING] * samples)
    if opt_code == ADAM:
        t = counters[1]
        s[1] = hp[hyper.BETA1]
        s[2] = hp[hyper.BETA2]
        s[3] = hp[hyper.EPSILON]
        s[4] = 1.0 / (1.0 - hp[hyper.BETA1] ** t)
        s[5] = 1.0 / (1.0 - hp[hyper.BETA2] ** t)
        s[6] = 1.0 - hp[hyper.BETA1]
        s[7] = 1.0 - hp[hyper.BETA2]
        _adam(params, grad, state[0], state[1], s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
        return
    s[1] = momentum_at(hp, samples)
    decay = hp[hyper.RATE_DECAY]
    nesterov = hp[hyper.NESTEROV] != 0.0
    if decay == 1.0:
        _sgd(params, grad, state[0], s[0], s[1], nesterov)
        return
    for layer in range(layout.shape[0]):
        lo = layout[layer, 0]
        hi = layout[layer, 1] + layout[layer, 3] * layout[layer, 4]
        _sgd(params[lo:hi], grad[lo:hi], state[0][lo:hi], s[0] * decay ** layer, s[1], nesterov)
