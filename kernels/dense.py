"""Forward and backward passes of a dense stack over a mini-batch.

Both passes work on one flat parameter vector described by a layout table
(:mod:`kernels.layout`). The forward pass saves, per layer, the input it saw
after dropout (``ins``), the dropout mask (``masks``), the pre-activation
(``zs``) and the activation (``acts``); the backward pass consumes exactly
those. Gradients are of the objective

    J = (1/m) Σ_i loss(h(x_i), y_i) + penalty(W) + β Σ_j KL(ρ ‖ ρ̂_j)

with ρ̂_j the mean activation of hidden unit j over the batch (sparse
autoencoders; off when β = 0). Small products run as plain loops (BLAS call
overhead dominates tiny nets such as XOR); larger ones call BLAS via np.dot.
"""

import math

import numpy as np

from kernels import hyper
from kernels._jit import inline, serial
from kernels.activations import _activate, _activate_backward, LINEAR, SIGMOID
from kernels.dropout import _fill_mask
from kernels.losses import _output_delta
from kernels.penalties import _penalty

#: below this many multiply-adds a product runs as a loop instead of BLAS.
BLAS_MIN_FLOPS = 4096


@inline
def _affine(inp, W, b, z):
    """z = inp @ W.T + b.  inp (batch, n_in), W (rows, n_in), z (batch, rows)."""
    batch, n_in = inp.shape
    rows = W.shape[0]
    if batch * rows * n_in >= BLAS_MIN_FLOPS:
        np.dot(inp, W.T, z)
        for i in range(batch):
            for r in range(rows):
                z[i, r] += b[r]
        return
    for i in range(batch):
        for r in range(rows):
            s = b[r]
            for k in range(n_in):
                s += inp[i, k] * W[r, k]
            z[i, r] = s


@inline
def _weight_grad(delta, inp, gW, gb):
    """gW = delta.T @ inp, gb = Σ_i delta_i.  delta (batch, rows), inp (batch, n_in)."""
    batch, rows = delta.shape
    n_in = inp.shape[1]
    if batch * rows * n_in >= BLAS_MIN_FLOPS:
        np.dot(delta.T, inp, gW)
    else:
        # row-major accumulation so the inner loop runs over contiguous n_in (vectorises)
        for r in range(rows):
            for k in range(n_in):
                gW[r, k] = 0.0
        for i in range(batch):
            for r in range(rows):
                d = delta[i, r]
                for k in range(n_in):
                    gW[r, k] += d * inp[i, k]
    for r in range(rows):
        gb[r] = 0.0
    for i in range(batch):
        for r in range(rows):
            gb[r] += delta[i, r]


@inline
def _input_grad(delta, W, da):
    """da = delta @ W.  delta (batch, rows), W (rows, n_in), da (batch, n_in)."""
    batch, rows = delta.shape
    n_in = W.shape[1]
    if batch * rows * n_in >= BLAS_MIN_FLOPS:
        np.dot(delta, W, da)
        return
    for i in range(batch):
        for k in range(n_in):
            da[i, k] = 0.0
        for r in range(rows):
            d = delta[i, r]
            for k in range(n_in):
                da[i, k] += d * W[r, k]


@serial
def _views(params, layout):
    """Per-layer ``W`` (rows, n_in) and ``b`` (rows,) views of a flat vector.

    Built once per kernel call: a reshape costs a helper call, and a tiny net
    (XOR) takes tens of thousands of steps per call.
    """
    Ws = [params[layout[k, 0]:layout[k, 1]].reshape((layout[k, 3] * layout[k, 4], layout[k, 2]))
          for k in range(layout.shape[0])]
    bs = [params[layout[k, 1]:layout[k, 1] + layout[k, 3] * layout[k, 4]] for k in range(layout.shape[0])]
    return Ws, bs


@serial
def _workspace_size(layout, batch, drop):
    """Entries of the flat buffer :func:`_carve` cuts a workspace from."""
    total = 0
    for k in range(layout.shape[0]):
        rows, n_out, n_in = layout[k, 3] * layout[k, 4], layout[k, 3], layout[k, 2]
        dropped = n_in if drop[k] > 0.0 else 0
        total += batch * (2 * rows + n_out + 2 * dropped + n_in)
    return total


@serial
def _carve(flat, layout, batch, drop):
    """Per-layer buffers for one batch size, as views of one flat vector.

    Returns lists z, a, dropped input, mask, delta, da. Layers whose input is
    not dropped get empty ``ins``/``masks`` placeholders: the forward pass then
    points ``ins[layer]`` at its source instead of copying it. One flat buffer
    can be reused across calls (L-BFGS calls the full-batch objective hundreds
    of times; fresh buffers cost ~5,700 page faults per call on 10,000 patches).
    """
    n = layout.shape[0]
    shapes = np.empty((n, 6, 2), np.int64)  # (layer, kind, rows/cols)
    starts = np.empty((n, 6), np.int64)
    offset = 0
    for k in range(n):
        rows, n_out, n_in = layout[k, 3] * layout[k, 4], layout[k, 3], layout[k, 2]
        dropped = batch if drop[k] > 0.0 else 0
        shapes[k, 0, 0], shapes[k, 0, 1] = batch, rows      # z
        shapes[k, 1, 0], shapes[k, 1, 1] = batch, n_out     # a
        shapes[k, 2, 0], shapes[k, 2, 1] = dropped, n_in    # dropped input
        shapes[k, 3, 0], shapes[k, 3, 1] = dropped, n_in    # mask
        shapes[k, 4, 0], shapes[k, 4, 1] = batch, rows      # delta
        shapes[k, 5, 0], shapes[k, 5, 1] = batch, n_in      # da
        for kind in range(6):
            starts[k, kind] = offset
            offset += shapes[k, kind, 0] * shapes[k, kind, 1]
    views = [[flat[starts[k, kind]:starts[k, kind] + shapes[k, kind, 0] * shapes[k, kind, 1]].reshape(
        (shapes[k, kind, 0], shapes[k, kind, 1])) for k in range(n)] for kind in range(6)]
    zs, acts, ins, masks, deltas, das = views[0], views[1], views[2], views[3], views[4], views[5]
    return zs, acts, ins, masks, deltas, das


@serial
def _workspace(layout, batch, like, drop):
    """A fresh workspace (see :func:`_carve`)."""
    return _carve(np.empty(_workspace_size(layout, batch, drop), like.dtype), layout, batch, drop)


@serial
def _forward(Ws, bs, layout, xb, rows, drop, seed, epoch, training, zs, acts, ins, masks):
    """Forward pass of a batch; fills zs/acts/ins/masks. Returns the output activations."""
    for layer in range(layout.shape[0]):
        src = xb if layer == 0 else acts[layer - 1]
        if training and drop[layer] > 0.0:
            inp, mask = ins[layer], masks[layer]
            _fill_mask(mask, drop[layer], seed, epoch, rows, layer)
            for i in range(inp.shape[0]):
                for k in range(inp.shape[1]):
                    inp[i, k] = src[i, k] * mask[i, k]
        else:
            ins[layer] = src
        _affine(ins[layer], Ws[layer], bs[layer], zs[layer])
        code = layout[layer, 5]
        if code == LINEAR:
            z, a = zs[layer], acts[layer]
            for i in range(a.shape[0]):
                for k in range(a.shape[1]):
                    a[i, k] = z[i, k]
        else:
            _activate(code, layout[layer, 4], zs[layer], acts[layer])
    return acts[layout.shape[0] - 1]


@serial
def _sparsity(a, beta, rho, rho_hat_used, da, inv_batch):
    """Add the KL-sparsity term to da and return β Σ_j KL(ρ‖ρ̂_j) for the batch's ρ̂.

    a, da : (batch, n); rho_hat_used : (n,) running estimates, or 0 to use the
    batch mean. Loops run row by row (contiguous) so they vectorise.
    """
    batch, n = a.shape
    mean = np.zeros(n)
    for i in range(batch):
        for j in range(n):
            mean[j] += a[i, j]
    extra = np.empty(n, a.dtype)
    value = 0.0
    for j in range(n):
        mean[j] /= batch
        value += rho * math.log(rho / mean[j]) + (1.0 - rho) * math.log((1.0 - rho) / (1.0 - mean[j]))
        used = rho_hat_used[j] if rho_hat_used[j] > 0.0 else mean[j]
        extra[j] = beta * (-rho / used + (1.0 - rho) / (1.0 - used)) * inv_batch
    for i in range(batch):
        for j in range(n):
            da[i, j] += extra[j]
    return beta * value


@serial
def _backward(params, Ws, gWs, gbs, layout, yb, loss_code, hp, drop, rho_hats, zs, acts, ins, masks, deltas, das,
              grad):
    """Backward pass; writes the batch gradient of J into ``grad``, returns (data loss sum, extra J)."""
    n_layers = layout.shape[0]
    last = n_layers - 1
    batch = yb.shape[0]
    inv_batch = 1.0 / batch
    loss_sum = _output_delta(loss_code, layout[last, 5], zs[last], acts[last], yb, hp[hyper.HUBER_DELTA], deltas[last])
    out_delta = deltas[last]
    for i in range(batch):
        for j in range(out_delta.shape[1]):
            out_delta[i, j] *= inv_batch
    extra = 0.0
    unit = 0
    for layer in range(last, -1, -1):
        _weight_grad(deltas[layer], ins[layer], gWs[layer], gbs[layer])
        if layer == 0:
            break
        da = das[layer]
        _input_grad(deltas[layer], Ws[layer], da)
        if drop[layer] > 0.0:
            mask = masks[layer]
            for i in range(batch):
                for k in range(da.shape[1]):
                    da[i, k] *= mask[i, k]
        below = layer - 1
        if hp[hyper.SPARSITY_BETA] > 0.0 and layout[below, 5] == SIGMOID:
            n_units = layout[below, 3]
            unit_start = rho_hats.shape[0] - unit - n_units
            extra += _sparsity(acts[below], hp[hyper.SPARSITY_BETA], hp[hyper.SPARSITY_RHO],
                               rho_hats[unit_start:unit_start + n_units], da, inv_batch)
            unit += n_units
        _activate_backward(layout[below, 5], layout[below, 4], zs[below], acts[below], da, deltas[below])
    extra += _penalty(params, layout, hp[hyper.L1], hp[hyper.L2], grad)
    return loss_sum, extra


@serial
def _loss_and_grad(params, layout, X, Y, loss_code, hp, drop, seed, epoch, grad, flat):
    """Full-batch objective J and its gradient (what L-BFGS and gradient checks call).

    Dropout masks are those of ``epoch`` (fixed for a gradient check).
    ``flat`` is a reusable buffer of ``_workspace_size(layout, m, drop)`` entries.
    """
    m = X.shape[0]
    rows = np.arange(m)
    zs, acts, ins, masks, deltas, das = _carve(flat, layout, m, drop)
    rho_hats = np.zeros(_hidden_units(layout), np.float64)
    Ws, bs = _views(params, layout)
    gWs, gbs = _views(grad, layout)
    _forward(Ws, bs, layout, X, rows, drop, seed, epoch, True, zs, acts, ins, masks)
    grad[:] = 0.0
    loss_sum, extra = _backward(params, Ws, gWs, gbs, layout, Y, loss_code, hp, drop, rho_hats,
                                zs, acts, ins, masks, deltas, das, grad)
    return loss_sum / m + extra


@serial
def _hidden_units(layout):
    total = 0
    for layer in range(layout.shape[0] - 1):
        total += layout[layer, 3]
    return max(total, 1)


@serial
def _predict(params, layout, X, batch_size, out, layer_stop):
    """Forward without dropout in chunks; copies the activations of ``layer_stop`` into ``out``."""
    m = X.shape[0]
    drop = np.zeros(layout.shape[0], np.float64)
    rows = np.arange(m)
    Ws, bs = _views(params, layout)
    for start in range(0, m, batch_size):
        stop = min(m, start + batch_size)
        zs, acts, ins, masks, _, _ = _workspace(layout, stop - start, params, drop)
        _forward(Ws, bs, layout, np.ascontiguousarray(X[start:stop]), rows[start:stop], drop, np.uint64(0), 0,
                 False, zs, acts, ins, masks)
        out[start:stop, :] = acts[layer_stop]
