"""Activations: forward and backward side by side.

Each activation is identified by an integer code so jitted kernels can
dispatch without Python objects. ``backward`` consumes what ``forward`` saved
(the pre-activation ``z`` and the activation ``a``).
"""

import math

import numpy as np

from kernels._jit import inline, serial

LINEAR, SIGMOID, TANH, RECTIFIER, MAXOUT, SOFTMAX = range(6)

ACTIVATION_CODES = {
    "linear": LINEAR,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "rectifier": RECTIFIER,
    "maxout": MAXOUT,
    "softmax": SOFTMAX,
}


_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split in two for an exact k * ln 2
_LN2_LO = 1.9082149292705877e-10


@serial
def _sigmoid_row(z, a, i, sign, bits):
    """a[i, :] = 1 / (1 + exp(-sign * z[i, :])) with loops LLVM vectorises.

    exp(v) = 2**k * exp(r), k = round(v / ln 2), |r| <= ln(2)/2: a degree-13
    Taylor polynomial for exp(r) (truncation error < 1e-17 relative) and the
    bits of 2**k built as integers. ``math.exp`` is a scalar libm call per
    element; this is ~1 ulp and vectorised (bits: int64 scratch of n entries).
    """
    n = a.shape[1]
    for j in range(n):
        v = min(max(-sign * z[i, j], -700.0), 700.0)
        k = math.floor(v * _LOG2E + 0.5)
        r = (v - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
            1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (
                1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 + r / 6227020800.0))))))))))))
        a[i, j] = p
        bits[j] = np.int64(k + 1023) << 52
    scale = bits.view(np.float64)
    for j in range(n):
        a[i, j] = 1.0 / (1.0 + a[i, j] * scale[j])


@inline
def _activate(code, pieces, z, a):
    """Forward: ``a = f(z)`` row by row.

    z : (batch, n_out * pieces); a : (batch, n_out). For maxout, unit ``j``
    takes the max over rows ``j * pieces ... j * pieces + pieces - 1``.
    """
    batch, n_out = a.shape
    if code == SIGMOID:
        bits = np.empty(n_out, np.int64)
        for i in range(batch):
            _sigmoid_row(z, a, i, 1.0, bits)
        return
    for i in range(batch):
        if code == SOFTMAX:
            top = z[i, 0]
            for j in range(1, n_out):
                top = max(top, z[i, j])
            total = 0.0
            for j in range(n_out):
                e = math.exp(z[i, j] - top)
                a[i, j] = e
                total += e
            for j in range(n_out):
                a[i, j] = a[i, j] / total
            continue
        for j in range(n_out):
            if code == MAXOUT:
                best = z[i, j * pieces]
                for k in range(1, pieces):
                    best = max(best, z[i, j * pieces + k])
                a[i, j] = best
            elif code == TANH:
                a[i, j] = math.tanh(z[i, j])
            elif code == RECTIFIER:
                a[i, j] = z[i, j] if z[i, j] > 0.0 else 0.0
            else:
                a[i, j] = z[i, j]


@inline
def _activate_backward(code, pieces, z, a, da, dz):
    """Backward: ``dz = da * f'(z)`` for element-wise activations and maxout.

    Softmax is handled by the loss (its Jacobian couples the outputs).
    da : (batch, n_out); dz : (batch, n_out * pieces). The branch on ``code``
    sits outside the loops so each loop vectorises.
    """
    batch, n_out = a.shape
    if code == MAXOUT:
        for i in range(batch):
            for j in range(n_out):
                winner = 0
                best = z[i, j * pieces]
                for k in range(1, pieces):
                    if z[i, j * pieces + k] > best:
                        best = z[i, j * pieces + k]
                        winner = k
                for k in range(pieces):
                    dz[i, j * pieces + k] = da[i, j] if k == winner else 0.0
    elif code == SIGMOID:
        for i in range(batch):
            for j in range(n_out):
                dz[i, j] = da[i, j] * a[i, j] * (1 - a[i, j])
    elif code == TANH:
        for i in range(batch):
            for j in range(n_out):
                dz[i, j] = da[i, j] * (1 - a[i, j] * a[i, j])
    elif code == RECTIFIER:
        for i in range(batch):
            for j in range(n_out):
                dz[i, j] = da[i, j] if z[i, j] > 0 else 0
    else:
        for i in range(batch):
            for j in range(n_out):
                dz[i, j] = da[i, j]


def activate(name, z, pieces=1):
    """Public forward of one activation (for tests and tools).

    Parameters
    ----------
    name : str
        Key of ``ACTIVATION_CODES``.
    z : ndarray of shape (batch, n_out * pieces), float32 or float64

    Returns
    -------
    a : ndarray of shape (batch, n_out)
    """
    if name not in ACTIVATION_CODES:
        raise ValueError(f"activation {name!r} is unknown; use one of {sorted(ACTIVATION_CODES)}.")
    z = np.ascontiguousarray(z)
    if z.ndim != 2:
        raise ValueError(f"z is {z.ndim}-dimensional and must be 2-dimensional (batch, units).")
    if z.shape[1] % pieces:
        raise ValueError(f"z has {z.shape[1]} columns, not a multiple of pieces={pieces}.")
    a = np.empty((z.shape[0], z.shape[1] // pieces), dtype=z.dtype)
    _activate(ACTIVATION_CODES[name], pieces, z, a)
    return a
