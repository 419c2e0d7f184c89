"""Argument checks shared by the public wrappers (dense, conv, pool).

The jitted kernels never raise for user errors: every public wrapper checks
its arguments with these helpers first, and gets C-contiguous arrays of the
right dtype back. ``TypeError`` for a wrong type, ``ValueError`` for a wrong
shape or value; each message names the argument, what was received and the fix.
"""

import numpy as np

from kernels import hyper
from kernels.activations import ACTIVATION_CODES, SIGMOID, SOFTMAX

FLOAT_DTYPES = (np.float32, np.float64)


def check_float_array(name, x, ndim=None, min_ndim=None):
    """Return ``x`` as a C-contiguous float32/float64 array or raise.

    Raises TypeError for non-arrays and other dtypes, ValueError for a wrong
    number of dimensions or an empty array.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}; "
                        f"convert it with np.asarray({name}, dtype=np.float32)")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}; it must be float32 or float64 "
                        f"(use {name}.astype(np.float32))")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} is {x.ndim}-dimensional with shape {x.shape} and must be "
                         f"{ndim}-dimensional")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} is {x.ndim}-dimensional with shape {x.shape}; it needs at "
                         f"least {min_ndim} dimensions")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); pass at least one element")
    return np.ascontiguousarray(x)


def check_int(name, value, minimum=1):
    """Validate a Python/numpy integer >= ``minimum`` and return it as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_choice(name, value, choices):
    """Return ``value`` lower-cased if it is one of ``choices`` (case-insensitive), else raise."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value.lower()


def check_shape(name, shape):
    """Validate a shape tuple of at least 2 positive ints (an array's ``.shape``) and return it."""
    if (not isinstance(shape, (tuple, list)) or len(shape) < 2
            or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)):
        raise ValueError(f"{name} must be a tuple of >= 2 positive ints (x.shape), "
                         f"got {shape!r}")
    return tuple(int(s) for s in shape)


def as_matrix(name, array, dtype, n_cols=None):
    """``array`` as a C-contiguous, writable 2-D array of ``dtype`` with ``n_cols`` columns, or raise."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} is {array.ndim}-dimensional with shape {array.shape}; it must be 2-dimensional "
                         f"(n_samples, n_features). Reshape 1-D data with .reshape(-1, 1).")
    if n_cols is not None and array.shape[1] != n_cols:
        raise ValueError(f"{name} has {array.shape[1]} columns but the network expects {n_cols}.")
    return np.require(array, dtype=dtype, requirements=("C", "W"))


def check_params(params, layout):
    """Raise unless ``params`` is the flat float32/float64, C-contiguous, writable vector ``layout`` describes."""
    if not isinstance(params, np.ndarray) or params.dtype.type not in FLOAT_DTYPES:
        kind = getattr(params, "dtype", type(params).__name__)
        raise TypeError(f"params has dtype {kind}; it must be a float32 or float64 ndarray.")
    expected = int(layout[-1, 1] + layout[-1, 3] * layout[-1, 4])
    if params.ndim != 1 or params.shape[0] != expected:
        raise ValueError(f"params has shape {params.shape}; the layout needs a flat vector of {expected} entries.")
    if not params.flags.c_contiguous or not params.flags.writeable:
        raise ValueError("params must be a C-contiguous, writable vector; pass params.copy().")


def check_hp(hp):
    """``hp`` as a contiguous float64 vector of ``hyper.N_HYPER`` entries, or raise."""
    hp = np.ascontiguousarray(hp, dtype=np.float64)
    if hp.shape != (hyper.N_HYPER,):
        raise ValueError(f"hp has shape {hp.shape}; it must be the ({hyper.N_HYPER},) vector hyper_vector() builds.")
    return hp


def check_drop(drop, layout):
    """Dropout ratios (None: none) as a float64 vector with one ratio in [0, 1) per layer, or raise."""
    drop = np.ascontiguousarray(drop if drop is not None else np.zeros(layout.shape[0]), dtype=np.float64)
    if drop.shape != (layout.shape[0],) or (drop < 0).any() or (drop >= 1).any():
        raise ValueError(f"drop={drop.tolist()} must hold one ratio in [0, 1) per layer input "
                         f"({layout.shape[0]} values: input first, then each hidden layer).")
    return drop


def check_units(loss, hp, layout):
    """Raise unless ``layout``'s units suit ``loss`` and ``hp``, as the model requires: cross-entropy needs a
    sigmoid or softmax output, KL sparsity (``hp[SPARSITY_BETA] > 0``) sigmoid hidden layers. The kernels
    would otherwise compute another objective (cross-entropy of a linear output) or skip the penalty."""
    names = {code: name for name, code in ACTIVATION_CODES.items()}
    output = int(layout[-1, 5])
    if loss == "cross_entropy" and output not in (SIGMOID, SOFTMAX):
        raise ValueError(f"loss='cross_entropy' needs a sigmoid or softmax output layer, got output activation "
                         f"{names[output]!r}; use loss='quadratic' (or 'absolute', 'huber') or a sigmoid/softmax "
                         "output.")
    beta = hp[hyper.SPARSITY_BETA]
    hidden = [int(code) for code in layout[:-1, 5]]
    if beta > 0 and (not hidden or any(code != SIGMOID for code in hidden)):
        raise ValueError(f"hp[SPARSITY_BETA]={beta:g} needs sigmoid hidden layers (KL(rho||rho_hat) of mean "
                         f"activations in (0, 1)), got hidden activations {[names[c] for c in hidden]}; use "
                         "sigmoid hidden layers or sparsity_beta=0.")
