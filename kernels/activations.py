"""Activations: forward and backward side by side.

Each activation is identified by an integer code so jitted kernels can
dispatch without Python objects. ``backward`` consumes what ``forward`` saved
(the pre-activation ``z`` and the activation ``a``).
"""

import math

import numpy as np

from kernels._jit import serial

LINEAR, SIGMOID, TANH, RECTIFIER, MAXOUT, SOFTMAX = range(6)

ACTIVATION_CODES = {
    "linear": LINEAR,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "rectifier": RECTIFIER,
    "maxout": MAXOUT,
    "softmax": SOFTMAX,
}


@serial
def _activate(code, pieces, z, a):
    """Forward: ``a = f(z)`` row by row.

    z : (batch, n_out * pieces); a : (batch, n_out). For maxout, unit ``j``
    takes the max over rows ``j * pieces ... j * pieces + pieces - 1``.
    """
    batch, n_out = a.shape
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
            elif code == SIGMOID:
                a[i, j] = 1.0 / (1.0 + math.exp(-z[i, j]))
            elif code == TANH:
                a[i, j] = math.tanh(z[i, j])
            elif code == RECTIFIER:
                a[i, j] = z[i, j] if z[i, j] > 0.0 else 0.0
            else:
                a[i, j] = z[i, j]


@serial
def _activate_backward(code, pieces, z, a, da, dz):
    """Backward: ``dz = da * f'(z)`` for element-wise activations and maxout.

    Softmax is handled by the loss (its Jacobian couples the outputs).
    da : (batch, n_out); dz : (batch, n_out * pieces).
    """
    batch, n_out = a.shape
    for i in range(batch):
        for j in range(n_out):
            g = da[i, j]
            if code == MAXOUT:
                winner = 0
                best = z[i, j * pieces]
                for k in range(1, pieces):
                    if z[i, j * pieces + k] > best:
                        best = z[i, j * pieces + k]
                        winner = k
                for k in range(pieces):
                    dz[i, j * pieces + k] = g if k == winner else 0.0
            elif code == SIGMOID:
                dz[i, j] = g * a[i, j] * (1.0 - a[i, j])
            elif code == TANH:
                dz[i, j] = g * (1.0 - a[i, j] * a[i, j])
            elif code == RECTIFIER:
                dz[i, j] = g if z[i, j] > 0.0 else 0.0
            else:
                dz[i, j] = g


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
