"""Per-epoch pieces both training drivers share: the sample order and the finiteness check.

:mod:`kernels.train` (mini-batches) and :mod:`kernels.online` (the fused
batch-1 twin) are peers; each imports these and neither imports the other.
"""

import math

from kernels._jit import inline, serial
from kernels.dropout import _shuffle


@inline
def _epoch_order(order, shuffle, seed, epoch):
    """The sample order of ``epoch``: ``order`` reset to 0..m-1 and shuffled, keyed by (seed, epoch).

    order : (m,) int64, written in place; left as it is when ``shuffle`` is
    False (it then stays ``arange(m)``).
    """
    if shuffle:
        for i in range(order.shape[0]):
            order[i] = i
        _shuffle(order, seed, epoch)


@serial
def _all_finite(values):
    """Whether every entry of the vector ``values`` is finite."""
    for k in range(values.shape[0]):
        if not math.isfinite(values[k]):
            return False
    return True

