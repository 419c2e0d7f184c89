"""Public, validating wrappers around the dense-network kernels.

The jitted kernels never raise for user errors; these wrappers check dtypes
and shapes, make arrays C-contiguous and writable, allocate outputs and call
the kernels. All arrays of one call share a float dtype (float32 or float64).
"""

import numpy as np

from kernels import hyper
from kernels.checks import as_matrix, check_drop, check_hp, check_params, check_units
from kernels.dense import _loss_and_grad, _predict, _workspace_size
from kernels.losses import LOSS_CODES
from kernels.online import _train_online, supports_online
from kernels.optim import OPTIMIZER_CODES
from kernels.train import _train_epochs


def hyper_vector(**values):
    """Build the float64 hyperparameter vector from keyword names of :mod:`kernels.hyper`.

    Unknown names raise ``ValueError``; unspecified entries are 0 except
    ``MAX_W2`` (inf), ``RATE_DECAY`` (1), ``HUBER_DELTA`` (1), ``RHO`` (0.99),
    ``EPSILON`` (1e-8), ``BETA1`` (0.9), ``BETA2`` (0.999).
    """
    hp = np.zeros(hyper.N_HYPER, dtype=np.float64)
    hp[hyper.MAX_W2] = np.inf
    hp[hyper.RATE_DECAY] = 1.0
    hp[hyper.HUBER_DELTA] = 1.0
    hp[hyper.RHO] = 0.99
    hp[hyper.EPSILON] = 1e-8
    hp[hyper.BETA1] = 0.9
    hp[hyper.BETA2] = 0.999
    for name, value in values.items():
        index = getattr(hyper, name.upper(), None)
        if not isinstance(index, int) or name.upper() == "N_HYPER":
            raise ValueError(f"hyperparameter {name!r} is unknown; see kernels.hyper for the names.")
        hp[index] = float(value)
    return hp


def loss_and_grad(params, layout, X, Y, loss="quadratic", hp=None, drop=None, seed=0, epoch=0, workspace=None):
    """Full-batch objective J(θ) and its gradient.

    Parameters
    ----------
    params : ndarray of shape (n_params,), float32 or float64
    layout : ndarray of shape (n_layers, 6), int64
    X : ndarray of shape (n_samples, n_inputs)
    Y : ndarray of shape (n_samples, n_outputs)
    loss : str
        One of ``LOSS_CODES``.
    hp : ndarray of shape (N_HYPER,), optional
        From :func:`hyper_vector`.
    drop : ndarray of shape (n_layers,), optional
        Dropout ratio of each layer's input; masks are those of ``epoch``.
    workspace : ndarray, optional
        From :func:`make_workspace`; reuse it across calls on the same data
        (L-BFGS) to avoid re-allocating and page-faulting the buffers.

    Returns
    -------
    J : float
    grad : ndarray of shape (n_params,)
    """
    check_params(params, layout)
    if loss not in LOSS_CODES:
        raise ValueError(f"loss {loss!r} is unknown; use one of {sorted(LOSS_CODES)}.")
    X = as_matrix("X", X, params.dtype, int(layout[0, 2]))
    Y = as_matrix("Y", Y, params.dtype, int(layout[-1, 3]))
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}; they must match.")
    hp = hyper_vector() if hp is None else check_hp(hp)
    check_units(loss, hp, layout)
    grad = np.zeros_like(params)
    drop = check_drop(drop, layout)
    if workspace is None:
        workspace = make_workspace(layout, X.shape[0], params.dtype, drop)
    elif workspace.dtype != params.dtype or workspace.size != _workspace_size(layout, X.shape[0], drop):
        raise ValueError("workspace was made for another shape or dtype; build it with "
                         "make_workspace(layout, n_samples, params.dtype, drop).")
    value = _loss_and_grad(params, layout, X, Y, LOSS_CODES[loss], hp, drop, np.uint64(seed), epoch, grad,
                           workspace)
    return float(value), grad


def make_workspace(layout, n_samples, dtype, drop=None):
    """A reusable buffer for :func:`loss_and_grad` on ``n_samples`` rows."""
    drop = check_drop(drop, layout)
    return np.empty(_workspace_size(layout, int(n_samples), drop), dtype=dtype)


def forward(params, layout, X, layer=-1, batch_size=4096):
    """Activations of ``layer`` (default: the output) without dropout.

    Returns
    -------
    out : ndarray of shape (n_samples, n_units_of_layer)
    """
    check_params(params, layout)
    X = as_matrix("X", X, params.dtype, int(layout[0, 2]))
    n_layers = layout.shape[0]
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer={layer} is out of range for a {n_layers}-layer network; use 0..{n_layers - 1} "
                         "or -1 for the output.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    layer = layer % n_layers
    out = np.empty((X.shape[0], int(layout[layer, 3])), dtype=params.dtype)
    if X.shape[0]:
        _predict(params, layout, X, int(batch_size), out, layer)
    return out


def train_epochs(params, layout, X, Y, state, counters, *, epoch0, n_epochs, batch_size, loss, optimizer,
                 hp, drop, seed, shuffle=True, rho_run=None):
    """Train in place for ``n_epochs`` epochs.

    Parameters
    ----------
    params : ndarray of shape (n_params,), updated in place
    state : ndarray of shape (2, n_params), optimiser state, updated in place
    counters : ndarray of shape (2,), float64 (samples seen, steps), updated in place
    rho_run : ndarray of shape (n_hidden_units,), optional
        Running mean activations for the running-estimate KL sparsity.

    Returns
    -------
    epoch_loss : ndarray of shape (n_epochs,)
        Mean per-sample training loss seen during each epoch.
    finished : int
        Epochs that finished with a finite loss and finite parameters;
        ``finished < n_epochs`` means the run diverged at epoch ``epoch0 + finished``.
    """
    check_params(params, layout)
    if optimizer not in OPTIMIZER_CODES:
        raise ValueError(f"optimizer {optimizer!r} is unknown; use one of {sorted(OPTIMIZER_CODES)}.")
    if loss not in LOSS_CODES:
        raise ValueError(f"loss {loss!r} is unknown; use one of {sorted(LOSS_CODES)}.")
    X = as_matrix("X", X, params.dtype, int(layout[0, 2]))
    Y = as_matrix("Y", Y, params.dtype, int(layout[-1, 3]))
    if X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"X has {X.shape[0]} rows and Y has {Y.shape[0]}; they must match and be non-empty.")
    if state.shape != (2, params.shape[0]) or state.dtype != params.dtype:
        raise ValueError(f"state has shape {state.shape}, dtype {state.dtype}; expected (2, {params.shape[0]}) "
                         f"{params.dtype}.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    if n_epochs < 0:
        raise ValueError(f"n_epochs={n_epochs} must be >= 0.")
    if not (isinstance(counters, np.ndarray) and counters.shape == (2,) and counters.dtype == np.float64):
        raise ValueError("counters must be a float64 ndarray of shape (2,): (samples seen, steps taken).")
    n_hidden = max(int(layout[:-1, 3].sum()), 1)
    rho_run = np.zeros(n_hidden) if rho_run is None else rho_run
    if not (isinstance(rho_run, np.ndarray) and rho_run.shape == (n_hidden,) and rho_run.dtype == np.float64):
        raise ValueError(f"rho_run must be a float64 ndarray of shape ({n_hidden},), one entry per hidden unit.")
    epoch_loss = np.full(n_epochs, np.nan)
    hp = check_hp(hp)
    check_units(loss, hp, layout)
    # batch 1 on a small net: the fused per-sample driver (same results, ~3x faster on XOR)
    driver = _train_online if supports_online(layout, hp, batch_size, X.shape[0]) else _train_epochs
    finished = driver(params, layout, X, Y, epoch0, n_epochs, int(batch_size), bool(shuffle), LOSS_CODES[loss], hp,
                      check_drop(drop, layout), OPTIMIZER_CODES[optimizer], state, counters, np.uint64(seed), rho_run,
                      epoch_loss)
    return epoch_loss, int(finished)
