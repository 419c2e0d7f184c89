"""Output losses, each returning its value and the output-layer delta.

Per-sample losses (the network objective averages them over the batch):

- quadratic : ½‖h − y‖² (the lab's J)
- cross_entropy : −Σ y log p (softmax) or −Σ [y log p + (1−y) log(1−p)] (sigmoid)
- absolute : Σ |h − y|
- huber : Σ huber_δ(h − y), quadratic within δ, linear beyond
"""

import math

import numpy as np

from kernels._jit import inline, serial
from kernels.activations import LINEAR, SOFTMAX, _derivative

QUADRATIC, CROSS_ENTROPY, ABSOLUTE, HUBER = range(4)

LOSS_CODES = {
    "quadratic": QUADRATIC,
    "cross_entropy": CROSS_ENTROPY,
    "absolute": ABSOLUTE,
    "huber": HUBER,
}


@serial
def _log_sigmoid(z):
    """log(1 / (1 + exp(-z))) without overflow."""
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


@inline
def _point_loss(loss_code, h, y, huber_delta):
    """Value and derivative d/dh of an element-wise loss at one output."""
    r = h - y
    if loss_code == QUADRATIC:
        return 0.5 * r * r, r
    if loss_code == ABSOLUTE:
        return abs(r), (1.0 if r > 0.0 else (-1.0 if r < 0.0 else 0.0))
    # huber
    if abs(r) <= huber_delta:
        return 0.5 * r * r, r
    return huber_delta * (abs(r) - 0.5 * huber_delta), (huber_delta if r > 0.0 else -huber_delta)


@serial
def _cross_entropy_row(act_code, z, a, y, delta, i, zo, ao, yo, do, n_out):
    """Cross-entropy of row ``i``, from logits for stability; delta = p − y.

    Arrays and uint64 column offsets as in :func:`_output_delta_span`.
    """
    total = 0.0
    if act_code == SOFTMAX:
        top = z[i, zo]
        for j in range(1, n_out):
            top = max(top, z[i, zo + j])
        log_norm = 0.0
        for j in range(n_out):
            log_norm += math.exp(z[i, zo + j] - top)
        log_norm = math.log(log_norm) + top
        for j in range(n_out):
            total -= y[i, yo + j] * (z[i, zo + j] - log_norm)
            delta[i, do + j] = a[i, ao + j] - y[i, yo + j]
    else:  # sigmoid outputs, independent binary labels
        for j in range(n_out):
            total -= y[i, yo + j] * _log_sigmoid(z[i, zo + j]) + (1.0 - y[i, yo + j]) * _log_sigmoid(-z[i, zo + j])
            delta[i, do + j] = a[i, ao + j] - y[i, yo + j]
    return total


@inline
def _output_delta_span(loss_code, act_code, z, a, y, delta, zo, ao, yo, do, n_out, huber_delta):
    """Sum of per-sample losses over the rows and ``delta = dL/dz`` (per sample).

    z, a, y, delta : 2-D pre-activations, outputs, targets and the delta
    written in place; each row's ``n_out`` entries sit at column offsets
    ``zo, ao, yo, do`` (uint64; a batch uses offsets 0, the one-row buffer of
    :mod:`kernels.online` spans of it, see
    :func:`kernels.activations._activate_span`).
    """
    total = 0.0
    for i in range(a.shape[0]):
        if loss_code == CROSS_ENTROPY:
            total += _cross_entropy_row(act_code, z, a, y, delta, i, zo, ao, yo, do, n_out)
            continue
        for j in range(n_out):
            value, grad = _point_loss(loss_code, a[i, ao + j], y[i, yo + j], huber_delta)
            total += value
            delta[i, do + j] = grad
        if act_code == SOFTMAX:
            # Jacobian of softmax: dz_j = p_j (g_j - sum_k g_k p_k)
            s = 0.0
            for j in range(n_out):
                s += delta[i, do + j] * a[i, ao + j]
            for j in range(n_out):
                delta[i, do + j] = a[i, ao + j] * (delta[i, do + j] - s)
        elif act_code != LINEAR:
            for j in range(n_out):
                delta[i, do + j] *= _derivative(act_code, z[i, zo + j], a[i, ao + j])
    return total


@inline
def _output_delta(loss_code, act_code, z, a, y, huber_delta, delta):
    """Sum of per-sample losses over the batch and ``delta = dL/dz`` (per sample).

    z : (batch, n_out) pre-activations; a : (batch, n_out) outputs;
    y : (batch, n_out) targets; delta : (batch, n_out) written in place.
    """
    start = np.uint64(0)
    return _output_delta_span(loss_code, act_code, z, a, y, delta, start, start, start, start, np.uint64(a.shape[1]),
                              huber_delta)
