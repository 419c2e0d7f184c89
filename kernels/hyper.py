"""Indices into the float64 hyperparameter vector the training kernels read.

Jitted kernels take plain scalars and arrays, not config objects; this vector
carries the scalars so kernel signatures stay short. Build it with
:func:`kernels.network.hyper_vector`.
"""

(
    L1, L2, MAX_W2, HUBER_DELTA,
    SPARSITY_BETA, SPARSITY_RHO, SPARSITY_RUNNING,
    RATE, RATE_ANNEALING, RATE_DECAY,
    MOMENTUM_START, MOMENTUM_RAMP, MOMENTUM_STABLE, NESTEROV,
    RHO, EPSILON, BETA1, BETA2,
) = range(18)

N_HYPER = 18
