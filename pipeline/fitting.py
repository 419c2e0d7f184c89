"""The training loops behind :meth:`DeepLearningModel.fit`.

Stochastic optimisers run blocks of epochs inside one jitted call
(:func:`kernels.network.train_epochs`) and score between blocks; L-BFGS
drives :func:`kernels.network.loss_and_grad` through scipy. Both stop with a
:class:`TrainingDivergedError` that names the epoch on a non-finite loss or
weight: never silent garbage.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.network import hyper_vector, loss_and_grad, make_workspace, train_epochs

def single_threaded_blas():
    """Limit BLAS to one thread while training.

    One trial runs on one core; parallelism comes from running trials in
    separate processes. A multi-threaded OpenBLAS under a loaded machine
    spins: measured here, 64-100-10 at batch 256 ran 20x slower with 2 BLAS
    threads than with 1. Numba's ``np.dot`` calls scipy's BLAS, so it is
    loaded before the limit is applied.
    """
    import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS numba calls)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


#: h2o scores on at most this many training rows (``score_training_samples``).
SCORE_TRAINING_SAMPLES = 10_000


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or weight."""

    def __init__(self, epoch: int, loss: float, hint: str):
        self.epoch = epoch
        self.loss = loss
        super().__init__(f"training diverged at epoch {epoch}: loss={loss!r} (non-finite loss or weight). {hint}")


DIVERGENCE_HINT = ("Lower `rate` (or use adaptive_rate / optimizer adadelta), add `max_w2`, or check the data for "
                   "extreme values.")


def hyperparameters(spec, loss_kernel_name) -> np.ndarray:
    """The kernel's float64 hyperparameter vector for a :class:`ModelSpec`."""
    return hyper_vector(
        l1=spec.l1, l2=spec.l2, max_w2=spec.max_w2, huber_delta=spec.huber_delta,
        sparsity_beta=spec.sparsity_beta, sparsity_rho=spec.average_activation,
        sparsity_running=1.0 if spec.sparsity_estimate == "running" else 0.0,
        rate=spec.rate, rate_annealing=spec.resolved_rate_annealing, rate_decay=spec.rate_decay,
        momentum_start=spec.momentum_start, momentum_ramp=spec.momentum_ramp,
        momentum_stable=spec.momentum_stable, nesterov=float(spec.nesterov_accelerated_gradient),
        rho=spec.rho, epsilon=spec.epsilon, beta1=spec.adam_beta1, beta2=spec.adam_beta2,
    )


def scoring_schedule(spec, total: int) -> int:
    """Epochs between scoring events: ``score_interval`` or about 100 events per run."""
    return spec.score_interval or max(1, total // 100)


def should_stop(history, key: str, rounds: int, tolerance: float, lower_is_better: bool) -> bool:
    """h2o-style early stopping on a moving average of ``rounds`` scoring events.

    Stops when the best moving average of the last ``rounds`` events fails to
    improve on the best one before them by the relative ``tolerance``.
    """
    values = [h[key] for h in history if key in h and math.isfinite(h[key])]
    if rounds <= 0 or len(values) < 2 * rounds:
        return False
    sign = 1.0 if lower_is_better else -1.0
    averages = [sign * np.mean(values[i - rounds + 1:i + 1]) for i in range(rounds - 1, len(values))]
    recent, before = min(averages[-rounds:]), min(averages[:-rounds])
    return recent >= before - tolerance * abs(before)


def run_stochastic(model, X, Y, hp, drop, score, progress=None):
    """Mini-batch training with scoring between blocks of epochs."""
    spec = model.spec
    total = int(math.ceil(spec.epochs))
    interval = scoring_schedule(spec, total)
    state = np.zeros((2, model.params_.size), dtype=model.params_.dtype)
    counters = np.zeros(2)
    n_hidden = max(sum(spec.hidden), 1)
    rho_run = np.zeros(n_hidden)
    done = 0
    while done < total:
        block = min(interval, total - done)
        epoch_loss, finished = train_epochs(
            model.params_, model.layout_, X, Y, state, counters, epoch0=done, n_epochs=block,
            batch_size=spec.mini_batch_size, loss=model.loss_, optimizer=spec.resolved_optimizer, hp=hp,
            drop=drop, seed=model.stream_seed_, shuffle=spec.shuffle_training_data, rho_run=rho_run)
        if finished < block:
            raise TrainingDivergedError(done + finished + 1, float(epoch_loss[finished]), DIVERGENCE_HINT)
        done += block
        entry = {"epoch": done, "samples": float(counters[0]), "training_objective": float(epoch_loss[-1])}
        entry.update(score())
        model.history_.append(entry)
        if progress is not None:
            progress(entry, total)
        if model.stop_check():
            break


def run_lbfgs(model, X, Y, hp, score, progress=None):
    """Full-batch L-BFGS (scipy) over the flat vector, in float64 (UFLDL's minFunc)."""
    from scipy.optimize import minimize

    spec = model.spec
    total = int(math.ceil(spec.epochs))
    interval = scoring_schedule(spec, total)
    X64, Y64 = np.ascontiguousarray(X, np.float64), np.ascontiguousarray(Y, np.float64)
    theta0 = model.params_.astype(np.float64)
    iteration = [0]
    workspace = make_workspace(model.layout_, X64.shape[0], np.float64)

    def objective(theta):
        value, grad = loss_and_grad(np.ascontiguousarray(theta), model.layout_, X64, Y64, model.loss_, hp,
                                    workspace=workspace)
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            raise TrainingDivergedError(iteration[0] + 1, value, DIVERGENCE_HINT)
        return value, grad

    def callback(intermediate_result):
        iteration[0] += 1
        model.params_[:] = intermediate_result.x
        if iteration[0] % interval == 0 or iteration[0] == total:
            entry = {"epoch": iteration[0], "samples": float(iteration[0] * X.shape[0]),
                     "training_objective": float(intermediate_result.fun)}
            entry.update(score())
            model.history_.append(entry)
            if progress is not None:
                progress(entry, total)

    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", callback=callback,
                      options={"maxiter": total, "maxcor": 20})
    model.params_[:] = result.x
    if not model.history_ or model.history_[-1]["epoch"] != iteration[0]:
        entry = {"epoch": iteration[0], "samples": float(iteration[0] * X.shape[0]),
                 "training_objective": float(result.fun)}
        entry.update(score())
        model.history_.append(entry)
    model.optimizer_message_ = str(result.message)
