"""Slow, obviously-correct references for kernels.conv and kernels.pool (float64 loops)."""

import math

import numpy as np

ACT = {
    "identity": lambda z: z,
    "sigmoid": lambda z: 1.0 / (1.0 + math.exp(-z)),
    "tanh": math.tanh,
    "rectifier": lambda z: max(z, 0.0),
}


def conv(images, W, b, activation):
    """f(W . patch + b) for every valid window; W rows in (row, col, channel) order."""
    N, H, Wd, C = images.shape
    K, D = W.shape
    p = int(round(math.sqrt(D // C)))
    f = ACT[activation]
    out = np.zeros((N, K, H - p + 1, Wd - p + 1))
    for n in range(N):
        for k in range(K):
            for i in range(H - p + 1):
                for j in range(Wd - p + 1):
                    z = float(b[k])
                    for r in range(p):
                        for c in range(p):
                            for ch in range(C):
                                z += float(W[k, (r * p + c) * C + ch]) * float(images[n, i + r, j + c, ch])
                    out[n, k, i, j] = f(z)
    return out


def conv_whitened(images, W, b, T, mean, activation):
    """f(W T (x - mean) + b) computed patch by patch, the definition folding must match."""
    N, H, Wd, C = images.shape
    D = W.shape[1]
    p = int(round(math.sqrt(D // C)))
    f = np.vectorize(ACT[activation])
    out = np.zeros((N, W.shape[0], H - p + 1, Wd - p + 1))
    for n in range(N):
        for i in range(H - p + 1):
            for j in range(Wd - p + 1):
                x = images[n, i:i + p, j:j + p, :].reshape(-1).astype(np.float64)
                out[n, :, i, j] = f(W @ (T @ (x - mean)) + b)
    return out


def windows(n, pool, stride, remainder):
    """Start/stop pairs of the windows along one axis."""
    if remainder == "drop":
        count = (n - pool) // stride + 1
    else:
        count = 1 if n <= pool else -(-(n - pool) // stride) + 1
    return [(i * stride, min(i * stride + pool, n)) for i in range(count)]


def pool(x, pool_size, stride, mode, remainder):
    """Pool the last two axes with explicit window lists."""
    stride = stride or pool_size
    rows = windows(x.shape[-2], pool_size, stride, remainder)
    cols = windows(x.shape[-1], pool_size, stride, remainder)
    out = np.zeros(x.shape[:-2] + (len(rows), len(cols)))
    reduce = np.mean if mode == "mean" else np.max
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[..., i, j] = reduce(x[..., r0:r1, c0:c1].astype(np.float64), axis=(-2, -1))
    return out


def numerical_gradient(fun, x, eps=1e-5):
    """Central differences of scalar fun() wrt every entry of x (perturbed in place)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = fun()
        flat[i] = old - eps
        minus = fun()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def rel_diff(a, b):
    """UFLDL's ||a - b|| / ||a + b||."""
    return np.linalg.norm(a - b) / np.linalg.norm(a + b)
