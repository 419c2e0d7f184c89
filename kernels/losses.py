"""Output losses, each returning its value and the output-layer delta.

Per-sample losses (the network objective averages them over the batch):

- quadratic : ½‖h − y‖² (the lab's J)
- cross_entropy : −Σ y log p (softmax) or −Σ [y log p + (1−y) log(1−p)] (sigmoid)
- absolute : Σ |h − y|
- huber : Σ huber_δ(h − y), quadratic within δ, linear beyond
"""

import math

from kernels._jit import inline, serial
from kernels.activations import SIGMOID, SOFTMAX, LINEAR, TANH, RECTIFIER

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


@inline
def _elementwise_derivative(act_code, z, a):
    if act_code == SIGMOID:
        return a * (1.0 - a)
    if act_code == TANH:
        return 1.0 - a * a
    if act_code == RECTIFIER:
        return 1.0 if z > 0.0 else 0.0
    return 1.0


@serial
def _cross_entropy_row(act_code, z, a, y, i, delta):
    """Cross-entropy of row ``i``, from logits for stability; delta = p − y."""
    n_out = a.shape[1]
    total = 0.0
    if act_code == SOFTMAX:
        top = z[i, 0]
        for j in range(1, n_out):
            top = max(top, z[i, j])
        log_norm = 0.0
        for j in range(n_out):
            log_norm += math.exp(z[i, j] - top)
        log_norm = math.log(log_norm) + top
        for j in range(n_out):
            total -= y[i, j] * (z[i, j] - log_norm)
            delta[i, j] = a[i, j] - y[i, j]
    else:  # sigmoid outputs, independent binary labels
        for j in range(n_out):
            total -= y[i, j] * _log_sigmoid(z[i, j]) + (1.0 - y[i, j]) * _log_sigmoid(-z[i, j])
            delta[i, j] = a[i, j] - y[i, j]
    return total


@inline
def _output_delta(loss_code, act_code, z, a, y, huber_delta, delta):
    """Sum of per-sample losses over the batch and ``delta = dL/dz`` (per sample).

    z : (batch, n_out) pre-activations; a : (batch, n_out) outputs;
    y : (batch, n_out) targets; delta : (batch, n_out) written in place.
    """
    batch, n_out = a.shape
    total = 0.0
    for i in range(batch):
        if loss_code == CROSS_ENTROPY:
            total += _cross_entropy_row(act_code, z, a, y, i, delta)
            continue
        for j in range(n_out):
            value, grad = _point_loss(loss_code, a[i, j], y[i, j], huber_delta)
            total += value
            delta[i, j] = grad
        if act_code == SOFTMAX:
            # Jacobian of softmax: dz_j = p_j (g_j - sum_k g_k p_k)
            s = 0.0
            for j in range(n_out):
                s += delta[i, j] * a[i, j]
            for j in range(n_out):
                delta[i, j] = a[i, j] * (delta[i, j] - s)
        elif act_code != LINEAR:
            for j in range(n_out):
                delta[i, j] *= _elementwise_derivative(act_code, z[i, j], a[i, j])
    return total
