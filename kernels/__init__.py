"""Numba kernels: numpy + numba only, no I/O."""
