"""Training driver: many epochs of mini-batch steps in one jitted call.

Calling into Numba once per epoch (or per batch) costs microseconds that
dominate tiny nets (XOR: 4 samples, 10,000 epochs), so the driver runs a
block of epochs per call; the Python layer calls it between scoring events.
Shuffling and dropout draw from counter-based random numbers keyed by the
trial's seed, so a run is bit-identical on any worker. Batch-1 runs of small
nets take the fused twin in :mod:`kernels.online` (same results, ~3x faster);
:func:`kernels.network.train_epochs` picks the driver.
"""

import math

import numpy as np

from kernels import hyper
from kernels._jit import inline, serial
from kernels.dense import _backward, _forward, _views, _workspace
from kernels.epochs import _all_finite, _epoch_order
from kernels.optim import _step
from kernels.penalties import _max_norm


@inline
def _gather(X, Y, rows, xb, yb):
    for i in range(rows.shape[0]):
        r = rows[i]
        for k in range(X.shape[1]):
            xb[i, k] = X[r, k]
        for k in range(Y.shape[1]):
            yb[i, k] = Y[r, k]


@serial
def _update_running_means(layout, acts, rho_run, decay):
    unit = 0
    for layer in range(layout.shape[0] - 1):
        a = acts[layer]
        for j in range(a.shape[1]):
            mean = 0.0
            for i in range(a.shape[0]):
                mean += a[i, j]
            mean /= a.shape[0]
            old = rho_run[unit + j]
            rho_run[unit + j] = mean if old <= 0.0 else decay * old + (1.0 - decay) * mean
        unit += a.shape[1]


@serial
def _batch_step(params, layout, xb, yb, rows, loss_code, hp, drop, opt_code, state, counters,
                seed, epoch, rho_run, rho_zero, ws, views, grad, scratch):
    zs, acts, ins, masks, deltas, das = ws
    Ws, bs, gWs, gbs = views
    _forward(Ws, bs, layout, xb, rows, drop, seed, epoch, True, zs, acts, ins, masks)
    rho_hats = rho_zero
    if hp[hyper.SPARSITY_RUNNING] != 0.0 and hp[hyper.SPARSITY_BETA] > 0.0:
        _update_running_means(layout, acts, rho_run, 0.9)
        rho_hats = rho_run
    loss_sum, extra = _backward(params, Ws, gWs, gbs, layout, yb, loss_code, hp, drop, rho_hats,
                                zs, acts, ins, masks, deltas, das, grad)
    _step(opt_code, params, grad, state, counters, hp, layout, xb.shape[0], scratch)
    _max_norm(params, layout, hp[hyper.MAX_W2])
    return loss_sum


@serial
def _train_epochs(params, layout, X, Y, epoch0, n_epochs, batch_size, shuffle, loss_code, hp, drop,
                  opt_code, state, counters, seed, rho_run, epoch_loss):
    """Run ``n_epochs`` epochs; returns how many finished with a finite loss.

    ``epoch_loss[e]`` receives the mean per-sample training loss seen during
    epoch ``epoch0 + e`` (with dropout active). A non-finite batch loss or
    parameter stops the run at that epoch, so the caller can report it.
    """
    m = X.shape[0]
    batch_size = min(batch_size, m)
    order = np.arange(m)
    grad = np.zeros_like(params)
    rho_zero = np.zeros_like(rho_run)
    scratch = np.empty(8, params.dtype)
    Ws, bs = _views(params, layout)
    gWs, gbs = _views(grad, layout)
    views = (Ws, bs, gWs, gbs)
    full = _workspace(layout, batch_size, params, drop)
    tail_size = m % batch_size
    tail = _workspace(layout, max(tail_size, 1), params, drop)
    xb_full = np.empty((batch_size, X.shape[1]), params.dtype)
    yb_full = np.empty((batch_size, Y.shape[1]), params.dtype)
    xb_tail = np.empty((max(tail_size, 1), X.shape[1]), params.dtype)
    yb_tail = np.empty((max(tail_size, 1), Y.shape[1]), params.dtype)
    for e in range(n_epochs):
        epoch = epoch0 + e
        _epoch_order(order, shuffle, seed, epoch)
        total = 0.0
        for start in range(0, m, batch_size):
            bs = min(batch_size, m - start)
            rows = order[start:start + bs]
            if bs == batch_size:
                _gather(X, Y, rows, xb_full, yb_full)
                total += _batch_step(params, layout, xb_full, yb_full, rows, loss_code, hp, drop, opt_code,
                                     state, counters, seed, epoch, rho_run, rho_zero, full, views, grad, scratch)
            else:
                _gather(X, Y, rows, xb_tail, yb_tail)
                total += _batch_step(params, layout, xb_tail, yb_tail, rows, loss_code, hp, drop, opt_code,
                                     state, counters, seed, epoch, rho_run, rho_zero, tail, views, grad, scratch)
        epoch_loss[e] = total / m
        if not math.isfinite(total) or not _all_finite(params):
            return e
    return n_epochs
