"""Inverted dropout with counter-based random numbers.

A mask entry is a pure function of ``(seed, epoch, sample, layer, unit)``
(SplitMix64 hashing), so masks are reproducible on any worker without a
global RNG, and a gradient check can fix them by fixing the epoch.
Kept units are scaled by ``1 / (1 - ratio)`` so prediction needs no rescaling
(equivalent to Srivastava's test-time ``W_test = p W`` with p = 1 − ratio).
"""

import numpy as np

from kernels._jit import inline, serial

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / 9007199254740992.0


@serial
def _splitmix(x):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@serial
def _uniform(seed, a, b, c):
    """A uniform float in [0, 1) keyed by ``seed`` and three counters."""
    h = _splitmix(np.uint64(seed))
    h = _splitmix(h ^ np.uint64(a))
    h = _splitmix(h ^ np.uint64(b))
    h = _splitmix(h ^ np.uint64(c))
    return float(h >> np.uint64(11)) * _INV_2_53


@inline
def _fill_mask_span(mask, mo, n, ratio, seed, epoch, rows, layer):
    """Write the inverted-dropout masks of a batch into the column span ``mask[:, mo:mo + n]``.

    rows : (batch,) global sample indices; ``mo`` and ``n`` are uint64
    (see :func:`kernels.activations._activate_span`).
    """
    keep = 1.0 / (1.0 - ratio)
    stream = np.uint64(epoch) * np.uint64(64) + np.uint64(layer)
    for i in range(mask.shape[0]):
        for j in range(n):
            u = _uniform(seed, stream, rows[i], j)
            mask[i, mo + j] = keep if u >= ratio else 0.0


@serial
def _fill_mask(mask, ratio, seed, epoch, rows, layer):
    """Write an inverted-dropout mask for a batch.

    mask : (batch, n) written in place; rows : (batch,) global sample indices.
    """
    _fill_mask_span(mask, np.uint64(0), np.uint64(mask.shape[1]), ratio, seed, epoch, rows, layer)


@serial
def _shuffle(order, seed, epoch):
    """Fisher-Yates shuffle of ``order`` in place, keyed by (seed, epoch)."""
    n = order.shape[0]
    for i in range(n - 1, 0, -1):
        j = int(_uniform(seed, np.uint64(0xD1CE), epoch, i) * (i + 1))
        tmp = order[i]
        order[i] = order[j]
        order[j] = tmp


def dropout_mask(shape, ratio, seed, epoch=0, layer=0, rows=None, dtype=np.float64):
    """Public wrapper: the inverted-dropout mask the trainer would draw.

    Parameters
    ----------
    shape : tuple (batch, n)
    ratio : float in [0, 1)
        Drop probability (h2o's ``*_dropout_ratio``; retention p = 1 − ratio).
    seed, epoch, layer : int
    rows : ndarray of shape (batch,), optional
        Global sample indices (default ``arange(batch)``).

    Returns
    -------
    mask : ndarray of shape ``shape`` with entries 0 or 1/(1-ratio)
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio={ratio} must be in [0, 1): it is the share of units dropped.")
    mask = np.empty(shape, dtype=dtype)
    rows = np.arange(shape[0], dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    _fill_mask(mask, float(ratio), np.uint64(seed), epoch, rows, layer)
    return mask
