"""Mean and max pooling over the last two axes, forward and backward.

Windows are ``pool x pool`` and start every ``stride`` pixels (``stride=None``
means ``stride=pool``: non-overlapping regions, UFLDL's pooling). A map of
``n`` pixels has

* ``remainder="drop"`` (default, UFLDL's ``floor(57/19)``):
  ``(n - pool) // stride + 1`` windows; trailing pixels that do not fill a
  whole window are ignored (they get zero gradient). Needs ``n >= pool``.
* ``remainder="partial"``: ``ceil((n - pool) / stride) + 1`` windows (one if
  ``n <= pool``); the last window is clipped to the map. Mean pooling divides
  by the number of pixels actually covered, max pooling takes the max of them.

Arrays of any leading shape are accepted: ``x`` of shape ``(..., H, W)`` gives
``(..., PH, PW)``. Max pooling's argmax (for the backward pass) is the flat
index ``r * W + c`` of the first maximum in row-major order of each window.
"""

import numpy as np
import numba

from kernels._jit import inline, parallel, serial
from kernels.checks import check_choice, check_float_array, check_int, check_shape

MEAN, MAX = 0, 1
MODES = {"mean": MEAN, "max": MAX}
REMAINDERS = ("drop", "partial")


def pool_output_size(n, pool, stride=None, remainder="drop"):
    """Number of windows along an axis of ``n`` pixels (see module docstring)."""
    pool = check_int("pool", pool)
    stride = pool if stride is None else check_int("stride", stride)
    remainder = check_choice("remainder", remainder, REMAINDERS)
    if remainder == "partial":
        return 1 if n <= pool else -(-(n - pool) // stride) + 1
    if n < pool:
        raise ValueError(f"pool={pool} is larger than the map size {n}; use a smaller pool "
                         f"or remainder='partial'")
    return (n - pool) // stride + 1


def pool_output_shape(h, w, pool, stride=None, remainder="drop"):
    """``(PH, PW)`` for an ``(h, w)`` map."""
    return (pool_output_size(h, pool, stride, remainder),
            pool_output_size(w, pool, stride, remainder))


# ----------------------------------------------------------------------------
# serial plane kernels (also called by kernels.conv's fused driver)
# ----------------------------------------------------------------------------
@serial
def _pool_plane(x, pool, stride, mode, out, acc):
    """Pool one (H, W) plane into out (PH, PW); acc is (W,) scratch."""
    H, W = x.shape
    PH, PW = out.shape
    cmax = min((PW - 1) * stride + pool, W)
    for i in range(PH):
        r0 = i * stride
        r1 = min(r0 + pool, H)
        for j in range(cmax):
            acc[j] = x[r0, j]
        for r in range(r0 + 1, r1):
            if mode == MEAN:
                for j in range(cmax):
                    acc[j] += x[r, j]
            else:
                for j in range(cmax):
                    acc[j] = max(acc[j], x[r, j])
        for jj in range(PW):
            c0 = jj * stride
            c1 = min(c0 + pool, W)
            s = acc[c0]
            for c in range(c0 + 1, c1):
                s = s + acc[c] if mode == MEAN else max(s, acc[c])
            if mode == MEAN:
                s = s / ((r1 - r0) * (c1 - c0))
            out[i, jj] = s


@inline
def _window(i, jj, pool, stride, H, W):
    """Rows ``r0:r1`` and columns ``c0:c1`` of window ``(i, jj)`` in an (H, W) plane, clipped to it."""
    r0 = i * stride
    c0 = jj * stride
    return r0, min(r0 + pool, H), c0, min(c0 + pool, W)


@serial
def _max_plane_argmax(x, pool, stride, out, idx):
    """Max-pool one (H, W) plane into out (PH, PW) and the flat index of each maximum into idx."""
    H, W = x.shape
    PH, PW = out.shape
    for i in range(PH):
        for jj in range(PW):
            r0, r1, c0, c1 = _window(i, jj, pool, stride, H, W)
            best = x[r0, c0]
            arg = r0 * W + c0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    if x[r, c] > best:
                        best = x[r, c]
                        arg = r * W + c
            out[i, jj] = best
            idx[i, jj] = arg


@serial
def _mean_plane_backward(g, pool, stride, gx):
    """Add the mean-pool gradient of one plane into gx (H, W), zeroed by caller."""
    H, W = gx.shape
    PH, PW = g.shape
    for i in range(PH):
        for jj in range(PW):
            r0, r1, c0, c1 = _window(i, jj, pool, stride, H, W)
            v = g[i, jj] / ((r1 - r0) * (c1 - c0))
            for r in range(r0, r1):
                for c in range(c0, c1):
                    gx[r, c] += v


# ----------------------------------------------------------------------------
# batch drivers over planes (P, H, W)
# ----------------------------------------------------------------------------
@serial
def _pool_range(x, lo, hi, pool, stride, mode, out):
    acc = np.empty(x.shape[2], x.dtype)
    for p in range(lo, hi):
        _pool_plane(x[p], pool, stride, mode, out[p], acc)


@parallel
def _pool_parallel(x, nblocks, pool, stride, mode, out):
    for t in numba.prange(nblocks):
        lo = t * x.shape[0] // nblocks
        hi = (t + 1) * x.shape[0] // nblocks
        _pool_range(x, lo, hi, pool, stride, mode, out)


@serial
def _max_argmax_batch(x, pool, stride, out, idx):
    for p in range(x.shape[0]):
        _max_plane_argmax(x[p], pool, stride, out[p], idx[p])


@serial
def _mean_backward_batch(g, pool, stride, gx):
    for p in range(g.shape[0]):
        _mean_plane_backward(g[p], pool, stride, gx[p])


@serial
def _max_backward_batch(g, idx, gx):
    P, PH, PW = g.shape
    for p in range(P):
        flat = gx[p].reshape(gx.shape[1] * gx.shape[2])
        for i in range(PH):
            for j in range(PW):
                flat[idx[p, i, j]] += g[p, i, j]


# ----------------------------------------------------------------------------
# public wrappers
# ----------------------------------------------------------------------------
def _prepare(x, pool, stride, remainder):
    x = check_float_array("x", x, min_ndim=2)
    pool = check_int("pool", pool)
    stride = pool if stride is None else check_int("stride", stride)
    h, w = x.shape[-2:]
    ph, pw = pool_output_shape(h, w, pool, stride, remainder)
    return x.reshape(-1, h, w), pool, stride, (ph, pw)


def pool2d(x, pool, stride=None, mode="mean", remainder="drop", parallel=True):
    """Mean or max pooling over the last two axes.

    Parameters
    ----------
    x : ndarray of shape (..., H, W), float32 or float64
    pool : int
        Window side.
    stride : int or None
        Step between windows; None means ``pool`` (non-overlapping).
    mode : {"mean", "max"}
    remainder : {"drop", "partial"}
        What happens to pixels that do not fill a whole window (module doc).
    parallel : bool
        Spread planes over Numba's threads.

    Returns
    -------
    out : ndarray of shape (..., PH, PW), same dtype as x
    """
    mode = check_choice("mode", mode, MODES)
    x3, pool, stride, (ph, pw) = _prepare(x, pool, stride, remainder)
    out = np.empty((x3.shape[0], ph, pw), x3.dtype)
    if parallel:
        nblocks = min(numba.get_num_threads(), x3.shape[0])
        _pool_parallel(x3, nblocks, pool, stride, MODES[mode], out)
    else:
        _pool_range(x3, 0, x3.shape[0], pool, stride, MODES[mode], out)
    return out.reshape(x.shape[:-2] + (ph, pw))


def max_pool2d_with_argmax(x, pool, stride=None, remainder="drop"):
    """Max pooling that also returns where each maximum came from.

    Returns
    -------
    out : ndarray of shape (..., PH, PW)
    argmax : int64 ndarray of shape (..., PH, PW)
        Flat index ``r * W + c`` into each (H, W) plane; feed it to
        :func:`max_pool2d_backward`.
    """
    x3, pool, stride, (ph, pw) = _prepare(x, pool, stride, remainder)
    out = np.empty((x3.shape[0], ph, pw), x3.dtype)
    idx = np.empty((x3.shape[0], ph, pw), np.int64)
    _max_argmax_batch(x3, pool, stride, out, idx)
    shape = x.shape[:-2] + (ph, pw)
    return out.reshape(shape), idx.reshape(shape)


def _check_grad(grad_out, input_shape, expected_pooled):
    grad_out = check_float_array("grad_out", grad_out, min_ndim=2)
    expected = tuple(input_shape[:-2]) + tuple(expected_pooled)
    if grad_out.shape != expected:
        raise ValueError(f"grad_out has shape {grad_out.shape} but the pooled output of an "
                         f"input of shape {tuple(input_shape)} has shape {expected}")
    return grad_out


def mean_pool2d_backward(grad_out, input_shape, pool, stride=None, remainder="drop"):
    """Gradient of :func:`pool2d` (mode="mean") with respect to its input.

    Parameters
    ----------
    grad_out : ndarray of shape (..., PH, PW)
    input_shape : tuple
        Shape ``(..., H, W)`` of the forward input.

    Returns
    -------
    grad_x : ndarray of shape input_shape; each pixel receives
        ``grad_out / count`` from every window that covers it.
    """
    input_shape = check_shape("input_shape", input_shape)
    pool = check_int("pool", pool)
    stride = pool if stride is None else check_int("stride", stride)
    h, w = input_shape[-2:]
    grad_out = _check_grad(grad_out, input_shape,
                           pool_output_shape(h, w, pool, stride, remainder))
    gx = np.zeros((grad_out.size // (grad_out.shape[-1] * grad_out.shape[-2]), h, w),
                  grad_out.dtype)
    _mean_backward_batch(grad_out.reshape(-1, *grad_out.shape[-2:]), pool, stride, gx)
    return gx.reshape(input_shape)


def max_pool2d_backward(grad_out, argmax, input_shape):
    """Gradient of max pooling: each window's gradient goes to its argmax.

    Parameters
    ----------
    grad_out : ndarray of shape (..., PH, PW)
    argmax : int64 ndarray of shape (..., PH, PW) from :func:`max_pool2d_with_argmax`
    input_shape : tuple ``(..., H, W)``

    Returns
    -------
    grad_x : ndarray of shape input_shape
    """
    input_shape = check_shape("input_shape", input_shape)
    grad_out = check_float_array("grad_out", grad_out, min_ndim=2)
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int64:
        raise TypeError("argmax must be the int64 array returned by max_pool2d_with_argmax, "
                        f"got {type(argmax).__name__} {getattr(argmax, 'dtype', '')}")
    h, w = input_shape[-2:]
    if argmax.shape != grad_out.shape or grad_out.shape[:-2] != input_shape[:-2]:
        raise ValueError(f"grad_out {grad_out.shape}, argmax {argmax.shape} and input_shape "
                         f"{input_shape} disagree; they must come from the same forward call")
    if argmax.min() < 0 or argmax.max() >= h * w:
        raise ValueError(f"argmax holds indices outside [0, {h * w}); it does not belong to "
                         f"an input with planes of {h}x{w}")
    g3 = grad_out.reshape(-1, *grad_out.shape[-2:])
    gx = np.zeros((g3.shape[0], h, w), grad_out.dtype)
    _max_backward_batch(g3, np.ascontiguousarray(argmax).reshape(g3.shape), gx)
    return gx.reshape(input_shape)
