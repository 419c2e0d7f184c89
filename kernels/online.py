"""Online (batch-1) training of small nets: one fused per-sample step.

A tiny net (XOR 2-2-1) takes ~40,000 online steps per run, and the generic
mini-batch path (:mod:`kernels.train`) spent most of each step on bookkeeping:
per-layer lists of views, per-step slices and the reference counting both
cost. Here one sample's input, target, dropped inputs, masks,
pre-activations, activations and deltas sit at fixed offsets of one
one-row buffer (a *plan* table, like the parameter layout), and weights are
read at their layout offsets with unsigned indices.

The step evaluates the same expressions in the same order as the generic
path with batch 1: the same span helpers for activations, losses and dropout
masks, the same optimiser step, penalty and max-norm, and gradients zeroed
then accumulated as there. The two agree bit for bit
(tests/kernels/test_online.py). Nets the generic path would hand to
BLAS, KL sparsity and maxout outputs stay on the generic path
(:func:`supports_online`); :func:`kernels.network.train_epochs` chooses.
"""

import math

import numpy as np

from kernels import hyper
from kernels._jit import inline, serial
from kernels.activations import MAXOUT, _activate_backward_span, _activate_span
from kernels.dense import BLAS_MIN_FLOPS
from kernels.dropout import _fill_mask_span
from kernels.epochs import _all_finite, _epoch_order
from kernels.losses import _output_delta_span
from kernels.optim import _step
from kernels.penalties import _max_norm, _penalty

#: columns of the plan table: offsets in the per-sample buffer of a layer's
#: source activations, (dropped) input, dropout mask, z, a, delta and da.
SRC, INP, MASK, Z, ACT, DELTA, DA = range(7)


def supports_online(layout, hp, batch_size, n_samples):
    """Whether :func:`_train_online` can replace the generic driver.

    Parameters
    ----------
    layout : ndarray of shape (n_layers, 6), int64
    hp : ndarray of shape (N_HYPER,), float64
    batch_size, n_samples : int

    Returns
    -------
    bool
        True for batch 1 without KL sparsity when every layer's product is
        below ``BLAS_MIN_FLOPS`` (where the generic path calls BLAS instead)
        and the output layer is not maxout (the generic path leaves the
        deltas of its extra pieces unset, so there is nothing to match).
    """
    rows = layout[:, 3] * layout[:, 4]
    return (min(int(batch_size), int(n_samples)) == 1 and not hp[hyper.SPARSITY_BETA] > 0.0
            and bool((rows * layout[:, 2] < BLAS_MIN_FLOPS).all()) and layout[-1, 5] != MAXOUT)


@serial
def _plan(layout, drop):
    """Offsets of each layer's spans in the per-sample buffer.

    The buffer starts with the sample's input (offset 0) and target (offset
    ``n_inputs``). A layer whose input is not dropped reads its source
    directly (``INP == SRC``) and gets an empty mask span. Offsets are uint64
    (see :func:`kernels.activations._activate_span`).

    Returns
    -------
    plan : ndarray of shape (n_layers, 7), uint64, columns ``SRC ... DA``
    size : int, entries of the buffer
    """
    n = layout.shape[0]
    plan = np.empty((n, 7), np.uint64)
    src = 0
    offset = layout[0, 2] + layout[n - 1, 3]
    for k in range(n):
        n_in, n_out, rows = layout[k, 2], layout[k, 3], layout[k, 3] * layout[k, 4]
        plan[k, SRC] = src
        plan[k, MASK] = offset
        plan[k, INP] = src
        if drop[k] > 0.0:
            plan[k, INP] = offset + n_in
            offset += 2 * n_in
        plan[k, Z] = offset
        plan[k, ACT] = offset + rows
        plan[k, DELTA] = offset + rows + n_out
        plan[k, DA] = offset + 2 * rows + n_out
        src = offset + rows
        offset += 2 * rows + n_out + n_in
    return plan, offset


@inline
def _forward_sample(params, layout, plan, buf, drop, seed, epoch, rows):
    """Forward pass of sample ``rows[0]`` (training: dropout on); fills the spans of ``buf`` (1, size)."""
    for layer in range(layout.shape[0]):
        n_in, n_out, pieces = np.uint64(layout[layer, 2]), np.uint64(layout[layer, 3]), np.uint64(layout[layer, 4])
        inp = plan[layer, INP]
        if drop[layer] > 0.0:
            src, mask = plan[layer, SRC], plan[layer, MASK]
            _fill_mask_span(buf, mask, n_in, drop[layer], seed, epoch, rows, layer)
            for k in range(n_in):
                buf[0, inp + k] = buf[0, src + k] * buf[0, mask + k]
        z, w, b = plan[layer, Z], np.uint64(layout[layer, 0]), np.uint64(layout[layer, 1])
        for r in range(n_out * pieces):
            s = params[b + r]
            w_row = w + r * n_in
            for k in range(n_in):
                s += buf[0, inp + k] * params[w_row + k]
            buf[0, z + r] = s
        _activate_span(layout[layer, 5], pieces, buf, buf, z, plan[layer, ACT], n_out)


@inline
def _backward_sample(params, layout, plan, buf, drop, grad):
    """Backward pass of one sample from the output delta in ``buf``; writes ``grad`` (no penalty)."""
    # zeroed, then accumulated, as kernels.dense._weight_grad does: a zero gradient then keeps the sign of
    # 0 + d * x (fastmath may not fold it away here either), and so does the optimiser state built from it
    grad[:] = 0.0
    for layer in range(layout.shape[0] - 1, -1, -1):
        n_in, rows = np.uint64(layout[layer, 2]), np.uint64(layout[layer, 3] * layout[layer, 4])
        w, b = np.uint64(layout[layer, 0]), np.uint64(layout[layer, 1])
        delta, inp = plan[layer, DELTA], plan[layer, INP]
        for r in range(rows):
            d = buf[0, delta + r]
            w_row = w + r * n_in
            for k in range(n_in):
                grad[w_row + k] += d * buf[0, inp + k]
            grad[b + r] += d
        if layer == 0:
            break
        da = plan[layer, DA]
        for k in range(n_in):
            buf[0, da + k] = 0.0
        for r in range(rows):
            d = buf[0, delta + r]
            w_row = w + r * n_in
            for k in range(n_in):
                buf[0, da + k] += d * params[w_row + k]
        if drop[layer] > 0.0:
            mask = plan[layer, MASK]
            for k in range(n_in):
                buf[0, da + k] *= buf[0, mask + k]
        below = layer - 1
        _activate_backward_span(layout[below, 5], np.uint64(layout[below, 4]), buf, buf, buf, buf, plan[below, Z],
                                plan[below, ACT], da, plan[below, DELTA], n_in)


@serial
def _train_online(params, layout, X, Y, epoch0, n_epochs, batch_size, shuffle, loss_code, hp, drop, opt_code, state,
                  counters, seed, rho_run, epoch_loss):
    """Batch-1 twin of :func:`kernels.train._train_epochs` (same arguments, same results).

    Only for what :func:`supports_online` accepts: ``batch_size`` is then
    effectively 1 and ``rho_run`` (sparsity) unused; both are kept so the two
    drivers are interchangeable.
    """
    m = X.shape[0]
    order = np.arange(m)
    grad = np.zeros_like(params)
    scratch = np.empty(8, params.dtype)
    plan, size = _plan(layout, drop)
    buf = np.zeros((1, size), params.dtype)
    rows = np.zeros(1, np.int64)
    n_x, n_y, last = np.uint64(X.shape[1]), np.uint64(Y.shape[1]), layout.shape[0] - 1
    y_at = n_x
    penalised = hp[hyper.L1] != 0.0 or hp[hyper.L2] != 0.0
    capped = math.isfinite(hp[hyper.MAX_W2])
    for e in range(n_epochs):
        epoch = epoch0 + e
        _epoch_order(order, shuffle, seed, epoch)
        total = 0.0
        for i in range(m):
            # One step, spelled out: every array passed to an inlined helper costs two atomic reference-count
            # updates per call that Numba's pruner leaves in big functions (~25% of an XOR step), so the step
            # is not one more helper, and the penalty and max-norm helpers are entered only when active.
            row = order[i]
            rows[0] = row
            for k in range(n_x):
                buf[0, k] = X[row, k]
            for k in range(n_y):
                buf[0, y_at + k] = Y[row, k]
            _forward_sample(params, layout, plan, buf, drop, seed, epoch, rows)
            total += _output_delta_span(loss_code, layout[last, 5], buf, buf, buf, buf, plan[last, Z], plan[last, ACT],
                                        y_at, plan[last, DELTA], n_y, hp[hyper.HUBER_DELTA])
            _backward_sample(params, layout, plan, buf, drop, grad)
            if penalised:
                _penalty(params, layout, hp[hyper.L1], hp[hyper.L2], grad)
            _step(opt_code, params, grad, state, counters, hp, layout, 1, scratch)
            if capped:
                _max_norm(params, layout, hp[hyper.MAX_W2])
        epoch_loss[e] = total / m
        if not math.isfinite(total) or not _all_finite(params):
            return e
    return n_epochs
