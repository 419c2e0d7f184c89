"""Valid 2-D convolution of learned features, fused pooling, and the backward pass.

A feature ``k`` is a row ``W[k]`` of length ``D = p * p * C``: the flattened
``p x p x C`` patch in **(row, col, channel) C order**, i.e.
``W[k].reshape(p, p, C)[r, c, ch]`` multiplies pixel ``(i + r, j + c, ch)``.
That is how ``pipeline.datasets`` flattens patches (an ``(h, w, c)`` array
raveled in C order), so an autoencoder trained on those patches plugs in
directly. For every valid window the output is ``f(W @ patch + b)``; UFLDL's
``f(W T (x - xbar) + b)`` is obtained by folding first: see
:func:`fold_whitening`. Correlation, not flipped convolution: no kernel flip
is needed (UFLDL flips only because MATLAB's ``conv2`` flips).

Speed: per image, an im2col matrix ``(M, D)`` with ``M = (H-p+1)(W-p+1)`` is
built inside Numba and multiplied by ``W`` through BLAS (``np.dot`` in njit).
The activations live in :mod:`kernels.activations`: float32 sigmoid/tanh use
a vectorised exp (max rel. error ~2e-6), float64 uses ``math.exp``.
``parallel=True`` spreads images over Numba threads with one buffer set per
thread; keep BLAS single-threaded then (``OPENBLAS_NUM_THREADS=1`` or
``threadpoolctl``).
"""

import math

import numba
import numpy as np

from kernels._jit import inline, parallel, serial
from kernels.activations import CONV_ACTIVATIONS, _activate_backward, _activate_row
from kernels.checks import check_choice, check_float_array, check_int
from kernels.pool import MODES, _pool_plane, pool_output_shape


# ----------------------------------------------------------------------------
# im2col / col2im and per-range kernels
# ----------------------------------------------------------------------------
@inline
def _patches(img, p, cols, scatter):
    """im2col and its adjoint: ``cols[i * OW + j, (r * p + c) * C + ch]`` <-> ``img[i + r, j + c, ch]``.

    ``scatter`` False copies the patches of img (H, W, C) into cols (M, D);
    True adds cols back into img (col2im, for the input gradient). Callers
    pass a constant, so the branch folds away.
    """
    H, W, C = img.shape
    OH, OW = H - p + 1, W - p + 1
    flat = img.reshape((H, W * C))
    pc = p * C
    for i in range(OH):
        for j in range(OW):
            m = i * OW + j
            for r in range(p):
                row = flat[i + r]
                if scatter:
                    for t in range(pc):
                        row[j * C + t] += cols[m, r * pc + t]
                else:
                    for t in range(pc):
                        cols[m, r * pc + t] = row[j * C + t]


@serial
def _im2col(img, p, cols):
    _patches(img, p, cols, False)


@serial
def _col2im_add(dcols, p, gimg):
    _patches(gimg, p, dcols, True)


@serial
def _conv_range(images, W, b, p, act, fast, lo, hi, out):
    """out[n] (K, OH, OW) for images lo..hi-1."""
    N, H, Wd, C = images.shape
    K, D = W.shape
    M = (H - p + 1) * (Wd - p + 1)
    cols = np.empty((M, D), images.dtype)
    ei = np.empty(M, np.int32)
    for n in range(lo, hi):
        _im2col(images[n], p, cols)
        z = out[n].reshape((K, M))
        np.dot(W, cols.T, z)
        for k in range(K):
            _activate_row(z[k], b[k], act, fast, ei)


@parallel
def _conv_parallel(images, W, b, p, act, fast, nblocks, out):
    N = images.shape[0]
    for t in numba.prange(nblocks):
        _conv_range(images, W, b, p, act, fast, t * N // nblocks, (t + 1) * N // nblocks, out)


@serial
def _conv_pool_range(images, W, b, p, act, fast, kc, pool, stride, mode, lo, hi, out):
    """out[n] (K, PH, PW): convolve kc features at a time, pool each map at once."""
    N, H, Wd, C = images.shape
    K, D = W.shape
    OH, OW = H - p + 1, Wd - p + 1
    M = OH * OW
    cols = np.empty((M, D), images.dtype)
    z = np.empty((min(kc, K), M), images.dtype)
    ei = np.empty(M, np.int32)
    acc = np.empty(OW, images.dtype)
    for n in range(lo, hi):
        _im2col(images[n], p, cols)
        for f0 in range(0, K, kc):
            f1 = min(f0 + kc, K)
            zc = z[:f1 - f0]
            np.dot(W[f0:f1], cols.T, zc)
            for k in range(f1 - f0):
                _activate_row(zc[k], b[f0 + k], act, fast, ei)
                _pool_plane(zc[k].reshape((OH, OW)), pool, stride, mode, out[n, f0 + k], acc)


@parallel
def _conv_pool_parallel(images, W, b, p, act, fast, kc, pool, stride, mode, nblocks, out):
    N = images.shape[0]
    for t in numba.prange(nblocks):
        _conv_pool_range(images, W, b, p, act, fast, kc, pool, stride, mode,
                         t * N // nblocks, (t + 1) * N // nblocks, out)


@serial
def _conv_backward_kernel(images, W, A, G, p, act, gW, gb, gX, need_x):
    N, H, Wd, C = images.shape
    K, D = W.shape
    M = (H - p + 1) * (Wd - p + 1)
    cols = np.empty((M, D), images.dtype)
    dz = np.empty((K, M), images.dtype)
    tmp = np.empty((K, D), images.dtype)
    dcols = np.empty((M, D), images.dtype)
    for n in range(N):
        _im2col(images[n], p, cols)
        a = A[n].reshape((K, M))
        # dz = g * f'(z) from the saved maps, z = a: only the rectifier reads z, and only its sign, which a keeps
        _activate_backward(act, 1, a, a, G[n].reshape((K, M)), dz)
        for k in range(K):
            gb[k] += dz[k].sum()
        np.dot(dz, cols, tmp)
        gW += tmp
        if need_x:
            np.dot(dz.T, W, dcols)
            _col2im_add(dcols, p, gX[n])


# ----------------------------------------------------------------------------
# public wrappers
# ----------------------------------------------------------------------------
def fold_whitening(W, b, T=None, mean=None):
    """Fold whitening and mean removal into the weights: ``W' = W T``, ``b' = b - W T xbar``.

    Then ``W' x + b' == W T (x - xbar) + b`` for every raw patch ``x``.

    Parameters
    ----------
    W : ndarray of shape (K, D)
    b : ndarray of shape (K,)
    T : ndarray of shape (D, D) or None
        Whitening matrix (e.g. ZCA); None means identity.
    mean : ndarray of shape (D,) or None
        Mean patch subtracted before whitening; None means zero.

    Returns
    -------
    W_folded : ndarray of shape (K, D)
    b_folded : ndarray of shape (K,)
    """
    W = check_float_array("W", W, ndim=2)
    b = check_float_array("b", b, ndim=1)
    K, D = W.shape
    if b.shape != (K,):
        raise ValueError(f"b has shape {b.shape}; W has {K} rows so b must have shape ({K},)")
    if T is not None:
        T = check_float_array("T", T, ndim=2)
        if T.shape != (D, D):
            raise ValueError(f"T has shape {T.shape}; W has {D} columns so T must be ({D}, {D})")
        W = W @ T
    if mean is not None:
        mean = check_float_array("mean", mean, ndim=1)
        if mean.shape != (D,):
            raise ValueError(f"mean has shape {mean.shape}; it must have shape ({D},) like a row of W")
        b = b - W @ mean
    return np.ascontiguousarray(W), np.ascontiguousarray(b)


def _check_conv_args(images, W, b, activation):
    images = check_float_array("images", images, ndim=4)
    W = check_float_array("W", W, ndim=2)
    N, H, Wd, C = images.shape
    K, D = W.shape
    if W.dtype != images.dtype:
        raise TypeError(f"W has dtype {W.dtype} but images are {images.dtype}; "
                        f"cast with W.astype(images.dtype)")
    p = int(round(math.sqrt(D / C)))
    if p * p * C != D:
        raise ValueError(f"W has {D} columns, which is not p*p*C for the {C} channels of images "
                         f"(shape (N, H, W, C) = {images.shape}); rows of W must be flattened "
                         f"p x p x {C} patches")
    if p > H or p > Wd:
        raise ValueError(f"the {p}x{p} features do not fit in {H}x{Wd} images")
    b = np.zeros(K, W.dtype) if b is None else check_float_array("b", b, ndim=1)
    if b.shape != (K,):
        raise ValueError(f"b has shape {b.shape}; W has {K} rows so b must have shape ({K},)")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError("W or b contains NaN or inf; check the trained model")
    activation = check_choice("activation", activation, CONV_ACTIVATIONS)
    return images, W, b.astype(images.dtype), p, CONV_ACTIVATIONS[activation]


def conv2d_forward(images, W, b, activation="sigmoid", parallel=True):
    """f(W @ patch + b) for every valid p x p window of every image.

    Parameters
    ----------
    images : ndarray of shape (N, H, W, C), float32 or float64
    W : ndarray of shape (K, p * p * C), same dtype as images
        Rows are flattened (row, col, channel) patches (module docstring).
    b : ndarray of shape (K,)
    activation : {"sigmoid", "tanh", "rectifier", "identity"} ("linear" = identity)
    parallel : bool
        Spread images over Numba threads.

    Returns
    -------
    out : ndarray of shape (N, K, H - p + 1, W - p + 1)
    """
    images, W, b, p, act = _check_conv_args(images, W, b, activation)
    N, H, Wd, _ = images.shape
    out = np.empty((N, W.shape[0], H - p + 1, Wd - p + 1), images.dtype)
    fast = images.dtype == np.float32
    if parallel and N > 1:
        _conv_parallel(images, W, b, p, act, fast, min(numba.get_num_threads(), N), out)
    else:
        _conv_range(images, W, b, p, act, fast, 0, N, out)
    return out


def conv2d_backward(images, W, activations, grad_out, activation="sigmoid", input_grad=True):
    """Gradients of ``sum(grad_out * conv2d_forward(images, W, b))``.

    Parameters
    ----------
    images : ndarray of shape (N, H, W, C)
    W : ndarray of shape (K, p * p * C)
    activations : ndarray of shape (N, K, OH, OW)
        The forward output (the derivative is computed from it).
    grad_out : ndarray of shape (N, K, OH, OW)
    activation : str
        The activation used in the forward pass.
    input_grad : bool
        Also return the gradient with respect to the images.

    Returns
    -------
    grad_W : ndarray of shape (K, p * p * C)
    grad_b : ndarray of shape (K,)
    grad_images : ndarray of shape (N, H, W, C), or None if not input_grad
    """
    images, W, _, p, act = _check_conv_args(images, W, None, activation)
    N, H, Wd, C = images.shape
    shape = (N, W.shape[0], H - p + 1, Wd - p + 1)
    arrays = []
    for name, arr in (("activations", activations), ("grad_out", grad_out)):
        arr = check_float_array(name, arr, ndim=4)
        if arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}; the forward output for these images "
                             f"and W has shape {shape}")
        arrays.append(arr.astype(images.dtype, copy=False))
    gW = np.zeros(W.shape, images.dtype)
    gb = np.zeros(W.shape[0], images.dtype)
    gX = np.zeros(images.shape if input_grad else (1, 1, 1, 1), images.dtype)
    _conv_backward_kernel(images, W, arrays[0], arrays[1], p, act, gW, gb, gX, bool(input_grad))
    return gW, gb, (gX if input_grad else None)


def convolve_and_pool(images, W, b, pool, mode="mean", activation="sigmoid", stride=None,
                      remainder="drop", chunk_images=256, chunk_features=200, parallel=True):
    """Pooled convolved features without materialising the convolved tensor.

    Each thread holds one im2col buffer ``(M, D)`` and one ``(chunk_features, M)``
    block of maps: ``chunk_features`` features are convolved, activated and pooled
    at a time (UFLDL convolved 50 at a time to bound MATLAB's memory; here the
    block is per thread, so the default 200 costs 2.6 MB at UFLDL's shape and
    keeps the GEMM large enough to run near BLAS speed). Images are handed to the kernel
    ``chunk_images`` at a time, so ``images`` may be a ``numpy.memmap``; only the
    pooled output ``(N, K, PH, PW)`` is allocated in full.

    Parameters
    ----------
    images : ndarray of shape (N, H, W, C), float32 or float64
    W : ndarray of shape (K, p * p * C), b : ndarray of shape (K,)
        Folded weights (see :func:`fold_whitening`).
    pool, stride, remainder
        As in :func:`kernels.pool.pool2d`; with UFLDL's shape (64x64 images,
        p = 8, pool = 19) the 57x57 maps give 3x3 pooled maps.
    mode : {"mean", "max"}
    activation : {"sigmoid", "tanh", "rectifier", "identity"}
    chunk_images, chunk_features : int
    parallel : bool

    Returns
    -------
    pooled : ndarray of shape (N, K, PH, PW)
    """
    mode = check_choice("mode", mode, MODES)
    chunk_images = check_int("chunk_images", chunk_images)
    chunk_features = check_int("chunk_features", chunk_features)
    pool = check_int("pool", pool)
    stride = pool if stride is None else check_int("stride", stride)
    images, W, b, p, act = _check_conv_args(images, W, b, activation)
    N, H, Wd, _ = images.shape
    ph, pw = pool_output_shape(H - p + 1, Wd - p + 1, pool, stride, remainder)
    out = np.empty((N, W.shape[0], ph, pw), images.dtype)
    fast = images.dtype == np.float32
    for start in range(0, N, chunk_images):
        chunk = np.ascontiguousarray(images[start:start + chunk_images])
        block = out[start:start + chunk.shape[0]]
        nblocks = min(numba.get_num_threads(), chunk.shape[0]) if parallel else 1
        if nblocks > 1:
            _conv_pool_parallel(chunk, W, b, p, act, fast, chunk_features, pool, stride,
                                MODES[mode], nblocks, block)
        else:
            _conv_pool_range(chunk, W, b, p, act, fast, chunk_features, pool, stride,
                             MODES[mode], 0, chunk.shape[0], block)
    return out
