"""One JIT policy for every kernel in the package.

The fastmath flag set leaves out ``nnan`` and ``ninf`` so that NaN/inf checks
inside kernels (and on their outputs) still work. Serial kernels are cached
and release the GIL; ``parallel=True`` is reserved for coarse batch drivers.
"""

import numba

#: fastmath flags without ``nnan``/``ninf`` (stumpy's convention).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def serial(func):
    """Compile ``func`` as a cached, GIL-free, serial nopython kernel."""
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")(func)


def parallel(func):
    """Compile ``func`` as a cached ``parallel=True`` batch driver."""
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", parallel=True)(func)
