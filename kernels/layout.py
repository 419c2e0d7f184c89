"""Flat parameter vector and its layout table.

All weights and biases of a network live in one contiguous vector. A layout
table of shape ``(n_layers, 6)`` (int64) says where each layer's pieces are:

=====  ==========================================================
col    meaning
=====  ==========================================================
0      offset of ``W`` (row-major, shape ``(n_out * pieces, n_in)``)
1      offset of ``b`` (shape ``(n_out * pieces,)``)
2      ``n_in``
3      ``n_out`` (units after maxout reduction)
4      ``pieces`` (1, or 2 for maxout)
5      activation code (see :mod:`kernels.activations`)
=====  ==========================================================
"""

import numpy as np

from kernels.activations import ACTIVATION_CODES, MAXOUT, SOFTMAX

W_OFF, B_OFF, N_IN, N_OUT, PIECES, ACT = range(6)


def make_layout(sizes, activations, maxout_pieces=2):
    """Build the layout table for a dense stack.

    Parameters
    ----------
    sizes : sequence of int, length n_layers + 1
        Units per layer, input first, e.g. ``(64, 100, 10)``.
    activations : sequence of str, length n_layers
        Activation name per layer (``"sigmoid"``, ``"tanh"``, ``"rectifier"``,
        ``"maxout"``, ``"linear"``, ``"softmax"``).
    maxout_pieces : int
        Linear pieces per maxout unit (h2o uses 2).

    Returns
    -------
    layout : ndarray of shape (n_layers, 6), int64
    n_params : int
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes={sizes} must list at least 2 positive layer sizes (input ... output).")
    if len(activations) != len(sizes) - 1:
        raise ValueError(
            f"activations has {len(activations)} entries but sizes={sizes} defines "
            f"{len(sizes) - 1} layers; give one activation per layer."
        )
    if activations[-1] == "maxout":
        raise ValueError("activation 'maxout' is for hidden layers only (as h2o); give the output layer "
                         "'linear', 'tanh', 'sigmoid' or 'softmax'.")
    layout = np.zeros((len(sizes) - 1, 6), dtype=np.int64)
    offset = 0
    for layer, name in enumerate(activations):
        if name not in ACTIVATION_CODES:
            raise ValueError(f"activation {name!r} is unknown; use one of {sorted(ACTIVATION_CODES)}.")
        code = ACTIVATION_CODES[name]
        if code == SOFTMAX and layer != len(activations) - 1:
            raise ValueError("softmax is only allowed on the output layer.")
        pieces = maxout_pieces if code == MAXOUT else 1
        n_in, n_out = sizes[layer], sizes[layer + 1]
        rows = n_out * pieces
        layout[layer] = (offset, offset + rows * n_in, n_in, n_out, pieces, code)
        offset += rows * n_in + rows
    return layout, offset


def weight_view(params, layout, layer):
    """Return the ``W`` view of one layer, shape ``(n_out * pieces, n_in)``."""
    w_off, _, n_in, n_out, pieces, _ = layout[layer]
    return params[w_off:w_off + n_out * pieces * n_in].reshape(n_out * pieces, n_in)


def bias_view(params, layout, layer):
    """Return the ``b`` view of one layer, shape ``(n_out * pieces,)``."""
    _, b_off, _, n_out, pieces, _ = layout[layer]
    return params[b_off:b_off + n_out * pieces]


def weight_mask(layout, n_params):
    """Boolean vector, True on weight entries (biases are never penalised)."""
    mask = np.zeros(n_params, dtype=bool)
    for w_off, b_off, *_ in layout:
        mask[w_off:b_off] = True
    return mask
