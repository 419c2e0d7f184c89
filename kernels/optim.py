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
from kernels._jit import serial

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


@serial
def _sgd(params, grad, velocity, lo, hi, rate, mom, nesterov):
    # The velocity is kept even at zero momentum: h2o's ramp starts at 0.
    for k in range(lo, hi):
        old = velocity[k]
        new = mom * old - rate * grad[k]
        velocity[k] = new
        if nesterov:
            params[k] += -mom * old + (1.0 + mom) * new
        else:
            params[k] += new


@serial
def _adadelta(params, grad, eg2, edx2, lo, hi, rho, eps):
    for k in range(lo, hi):
        g = grad[k]
        eg2[k] = rho * eg2[k] + (1.0 - rho) * g * g
        dx = -math.sqrt(edx2[k] + eps) / math.sqrt(eg2[k] + eps) * g
        edx2[k] = rho * edx2[k] + (1.0 - rho) * dx * dx
        params[k] += dx


@serial
def _adam(params, grad, m1, m2, lo, hi, rate, beta1, beta2, eps, t):
    c1 = 1.0 - beta1 ** t
    c2 = 1.0 - beta2 ** t
    for k in range(lo, hi):
        g = grad[k]
        m1[k] = beta1 * m1[k] + (1.0 - beta1) * g
        m2[k] = beta2 * m2[k] + (1.0 - beta2) * g * g
        params[k] -= rate * (m1[k] / c1) / (math.sqrt(m2[k] / c2) + eps)


@serial
def _step(opt_code, params, grad, state, counters, hp, layout, batch):
    """Apply one optimiser step in place, after a batch of ``batch`` samples."""
    samples = counters[0]
    counters[0] += batch
    counters[1] += 1.0
    rate = hp[hyper.RATE] / (1.0 + hp[hyper.RATE_ANNEALING] * samples)
    mom = momentum_at(hp, samples)
    for layer in range(layout.shape[0]):
        lo = layout[layer, 0]
        hi = layout[layer, 1] + layout[layer, 3] * layout[layer, 4]
        if opt_code == ADADELTA:
            _adadelta(params, grad, state[0], state[1], lo, hi, hp[hyper.RHO], hp[hyper.EPSILON])
        elif opt_code == ADAM:
            _adam(params, grad, state[0], state[1], lo, hi, rate, hp[hyper.BETA1], hp[hyper.BETA2],
                  hp[hyper.EPSILON], counters[1])
        else:
            layer_rate = rate * hp[hyper.RATE_DECAY] ** layer
            _sgd(params, grad, state[0], lo, hi, layer_rate, mom, hp[hyper.NESTEROV] != 0.0)
