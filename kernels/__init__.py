"""Numba kernels: numpy + numba only, no I/O.

The public API, one re-export a line; code outside ``kernels`` imports only
these names (``from kernels import train_epochs``). Everything else, and
every ``_name``, is internal to the package.
"""

from kernels.activations import ACTIVATION_CODES
from kernels.activations import CONV_ACTIVATIONS
from kernels.activations import activate
from kernels.conv import conv2d_backward
from kernels.conv import conv2d_forward
from kernels.conv import convolve_and_pool
from kernels.conv import fold_whitening
from kernels.dropout import dropout_mask
from kernels.layout import bias_view
from kernels.layout import make_layout
from kernels.layout import weight_mask
from kernels.layout import weight_view
from kernels.losses import LOSS_CODES
from kernels.network import forward
from kernels.network import hyper_vector
from kernels.network import loss_and_grad
from kernels.network import make_workspace
from kernels.network import train_epochs
from kernels.online import supports_online
from kernels.optim import OPTIMIZER_CODES
from kernels.optim import momentum_at
from kernels.pool import max_pool2d_backward
from kernels.pool import max_pool2d_with_argmax
from kernels.pool import mean_pool2d_backward
from kernels.pool import pool2d
from kernels.pool import pool_output_shape

__all__ = [
    "ACTIVATION_CODES",
    "CONV_ACTIVATIONS",
    "LOSS_CODES",
    "OPTIMIZER_CODES",
    "activate",
    "bias_view",
    "conv2d_backward",
    "conv2d_forward",
    "convolve_and_pool",
    "dropout_mask",
    "fold_whitening",
    "forward",
    "hyper_vector",
    "loss_and_grad",
    "make_layout",
    "make_workspace",
    "max_pool2d_backward",
    "max_pool2d_with_argmax",
    "mean_pool2d_backward",
    "momentum_at",
    "pool2d",
    "pool_output_shape",
    "supports_online",
    "train_epochs",
    "weight_mask",
    "weight_view",
]
