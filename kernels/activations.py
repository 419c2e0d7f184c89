"""Activations: forward and backward side by side, for dense layers, conv and losses.

Each activation is identified by an integer code so jitted kernels can
dispatch without Python objects. ``backward`` consumes what ``forward`` saved
(the pre-activation ``z`` and the activation ``a``). The dense layers use the
span pair :func:`_activate_span` / :func:`_activate_backward_span`; the output
losses use the scalar :func:`_derivative`; convolution uses the float32-fast
row forward :func:`_activate_row` and the same :func:`_activate_backward`.
The products keep the order each caller always used, so results are
unchanged bit for bit.
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

#: the element-wise activations convolution supports ("identity" is "linear").
CONV_ACTIVATIONS = {"identity": LINEAR, "linear": LINEAR, "sigmoid": SIGMOID, "tanh": TANH,
                    "rectifier": RECTIFIER}
_F = np.float32


_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split in two for an exact k * ln 2
_LN2_LO = 1.9082149292705877e-10


@inline
def _exp_parts(v):
    """exp(v) as ``(p, scale)`` with exp(v) = p * scale, for v in [-700, 700].

    k = round(v / ln 2), |r| <= ln(2)/2: a degree-13 Taylor polynomial for
    p = exp(r) (truncation error < 1e-17 relative) and scale = 2**k built from
    its bits. ``math.exp`` is a scalar libm call per element; this is ~1 ulp,
    allocation-free and vectorises in loops.
    """
    k = math.floor(v * _LOG2E + 0.5)
    r = (v - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (
            1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 + r / 6227020800.0))))))))))))
    bits = np.int64(np.int64(k + 1023) << 52)
    return p, bits.view(np.float64)


@inline
def _elementwise_span(code, backward, z, a, da, out, zo, ao, dao, oo, n_out):
    """tanh, rectifier and linear on a column span of every row, forward and backward in one loop.

    Forward (``backward`` False): ``out = f(z)``; backward: ``out = da * f'(z)``,
    using the saved ``z`` and ``a``. Spans of ``n_out`` entries at the uint64
    offsets ``zo, ao, dao, oo`` (see :func:`_activate_span`). The branches test
    loop-invariant arguments, so LLVM unswitches them out of the loop and each
    variant still vectorises (measured: the same time as one loop per case,
    forward and backward, float32 and float64).
    """
    for i in range(out.shape[0]):
        for j in range(n_out):
            zz = z[i, zo + j]
            if backward:
                g = da[i, dao + j]
                if code == TANH:
                    out[i, oo + j] = g * (1 - a[i, ao + j] * a[i, ao + j])
                elif code == RECTIFIER:
                    out[i, oo + j] = g if zz > 0 else 0
                else:
                    out[i, oo + j] = g
            elif code == TANH:
                out[i, oo + j] = math.tanh(zz)
            elif code == RECTIFIER:
                out[i, oo + j] = zz if zz > 0.0 else 0.0
            else:
                out[i, oo + j] = zz


@inline
def _activate_span(code, pieces, z, a, zo, ao, n_out):
    """Forward on a column span of every row: ``a[i, ao:ao + n_out] = f(z[i, zo:zo + n_out * pieces])``.

    z, a : 2-D arrays, a batch (offsets 0) or the one-row per-sample buffer
    of :mod:`kernels.online` (spans at offsets). ``pieces, zo, ao, n_out``
    are uint64: unsigned indices skip Numba's negative-index wraparound, so
    the loops vectorise without per-sample views. Rows loop inside, so a
    batch binds the arrays once (each array argument of an inlined call costs
    reference-count updates). For maxout, unit ``j`` takes the max over
    ``z[i, zo + j * pieces ... + pieces - 1]``.
    """
    batch = a.shape[0]
    if code == SIGMOID:
        for i in range(batch):
            for j in range(n_out):
                p, scale = _exp_parts(min(max(-z[i, zo + j], -700.0), 700.0))
                a[i, ao + j] = p  # rounded to a's dtype before the division, as float32 runs always did
                a[i, ao + j] = 1.0 / (1.0 + a[i, ao + j] * scale)
    elif code == SOFTMAX:
        for i in range(batch):
            top = z[i, zo]
            for j in range(1, n_out):
                top = max(top, z[i, zo + j])
            total = 0.0
            for j in range(n_out):
                e = math.exp(z[i, zo + j] - top)
                a[i, ao + j] = e
                total += e
            for j in range(n_out):
                a[i, ao + j] = a[i, ao + j] / total
    elif code == MAXOUT:
        for i in range(batch):
            for j in range(n_out):
                best = z[i, zo + j * pieces]
                for k in range(1, pieces):
                    best = max(best, z[i, zo + j * pieces + k])
                a[i, ao + j] = best
    else:
        _elementwise_span(code, False, z, a, a, a, zo, ao, ao, ao, n_out)


@inline
def _activate(code, pieces, z, a):
    """Forward: ``a = f(z)``.  z : (batch, n_out * pieces); a : (batch, n_out)."""
    start = np.uint64(0)
    _activate_span(code, np.uint64(pieces), z, a, start, start, np.uint64(a.shape[1]))


@serial
def _fast_sigmoid_inplace(row, bk, s, ei):
    """row <- 1 / (1 + exp(-s (row + bk))) with loops LLVM vectorises; ei is int32 scratch.

    float32: exp(v) = 2**k * exp(f), k = round(v / ln 2): a degree-6 polynomial
    for exp(f) and the float bits of 2**k built as integers (no scalar libm call;
    max rel. error ~2e-6).
    """
    n = row.size
    for m in range(n):
        v = min(max(-s * (row[m] + bk), _F(-87.0)), _F(87.0))
        kf = np.floor(v * _F(1.4426950408889634) + _F(0.5))
        f = v - kf * _F(0.693145751953125) - kf * _F(1.428606765330187e-06)
        row[m] = _F(1.0) + f * (_F(1.0) + f * (_F(0.5) + f * (_F(0.16666667) + f * (
            _F(0.041666668) + f * (_F(0.008333334) + f * _F(0.0013888889))))))
        ei[m] = np.int32((kf + _F(127.0)) * _F(8388608.0))  # exponent bits of 2**k
    scale = ei[:n].view(np.float32)
    for m in range(n):
        row[m] = row[m] * scale[m] + _F(1.0)
    np.reciprocal(row, row)  # a ufunc: vectorised, unlike Numba's checked scalar division


@serial
def _activate_row(row, bk, code, fast, ei):
    """Convolution's forward: ``row <- f(row + bk)`` in place for an element-wise ``code``.

    row : (M,) one feature map; ``fast`` selects the float32 vectorised
    sigmoid (tanh(z) = 2 sigmoid(2z) - 1); ei : (M,) int32 scratch. The
    backward pass is :func:`_activate_backward` with ``z = a`` (the saved map).
    """
    n = row.size
    if code == TANH and not fast:
        for m in range(n):
            row[m] = math.tanh(row[m] + bk)
    elif code == SIGMOID or code == TANH:
        s = _F(2.0) if code == TANH else _F(1.0)
        if fast:
            _fast_sigmoid_inplace(row, bk, s, ei)
        else:
            for m in range(n):
                row[m] = 1.0 + math.exp(-(row[m] + bk))
            np.reciprocal(row, row)
        if code == TANH:
            for m in range(n):
                row[m] = row[m] + row[m] - _F(1.0)
    elif code == RECTIFIER:
        for m in range(n):
            v = row[m] + bk
            row[m] = v if v > 0 else 0
    else:
        for m in range(n):
            row[m] = row[m] + bk


@inline
def _activate_backward_span(code, pieces, z, a, da, dz, zo, ao, dao, dzo, n_out):
    """Backward on a column span of every row: ``dz = da * f'(z)`` (element-wise activations and maxout).

    Softmax is handled by the loss (its Jacobian couples the outputs). Arrays
    and uint64 offsets as in :func:`_activate_span`: the spans of z and dz
    hold ``n_out * pieces`` entries, those of a and da ``n_out``. The branch
    on ``code`` sits outside the loops (or is unswitched out of them) so each
    loop vectorises.
    """
    batch = a.shape[0]
    if code == MAXOUT:
        for i in range(batch):
            for j in range(n_out):
                winner = 0
                best = z[i, zo + j * pieces]
                for k in range(1, pieces):
                    if z[i, zo + j * pieces + k] > best:
                        best = z[i, zo + j * pieces + k]
                        winner = k
                for k in range(pieces):
                    dz[i, dzo + j * pieces + k] = da[i, dao + j] if k == winner else 0.0
    elif code == SIGMOID:
        for i in range(batch):
            for j in range(n_out):
                dz[i, dzo + j] = da[i, dao + j] * a[i, ao + j] * (1 - a[i, ao + j])
    else:
        _elementwise_span(code, True, z, a, da, dz, zo, ao, dao, dzo, n_out)


@inline
def _activate_backward(code, pieces, z, a, da, dz):
    """Backward: ``dz = da * f'(z)``.  z, dz : (batch, n_out * pieces); a, da : (batch, n_out)."""
    start = np.uint64(0)
    _activate_backward_span(code, np.uint64(pieces), z, a, da, dz, start, start, start, start, np.uint64(a.shape[1]))


@inline
def _derivative(code, z, a):
    """f'(z) of an element-wise activation at one point, from the saved ``z`` and ``a = f(z)``.

    For the output losses, which scale their delta by it (``delta * f'``).
    """
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    if code == RECTIFIER:
        return 1.0 if z > 0.0 else 0.0
    return 1.0


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
