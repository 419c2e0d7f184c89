"""Weight penalties (biases are never penalised) and the max-norm constraint.

- l2 : (λ₂/2) Σ W²  → gradient λ₂ W
- l1 : λ₁ Σ |W|     → (sub)gradient λ₁ sign(W)
- elastic net : both at once
- max-norm : after each step, each unit's incoming weight vector is rescaled so
  that ‖w‖² ≤ max_w2 (h2o's ``max_w2``; Srivastava's c is √max_w2).
"""

import math

import numpy as np

from kernels._jit import inline


@inline
def _penalty(params, layout, l1, l2, grad):
    """Add the penalty gradient to ``grad`` and return the penalty value."""
    total = 0.0
    if l1 == 0.0 and l2 == 0.0:
        return total
    for layer in range(layout.shape[0]):
        lo, hi = layout[layer, 0], layout[layer, 1]
        weights, g = params[lo:hi], grad[lo:hi]
        for k in range(weights.shape[0]):
            w = weights[k]
            total += 0.5 * l2 * w * w + l1 * abs(w)
            g[k] += l2 * w + l1 * np.sign(w)
    return total


@inline
def _max_norm(params, layout, max_w2):
    """Rescale rows of each W whose squared norm exceeds ``max_w2`` (in place)."""
    if not math.isfinite(max_w2):
        return
    for layer in range(layout.shape[0]):
        w_off, _, n_in, n_out, pieces, _ = layout[layer]
        for row in range(n_out * pieces):
            start = w_off + row * n_in
            sq = 0.0
            for k in range(start, start + n_in):
                sq += params[k] * params[k]
            if sq > max_w2:
                scale = math.sqrt(max_w2 / sq)
                for k in range(start, start + n_in):
                    params[k] *= scale
