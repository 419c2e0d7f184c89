"""The training loops behind :meth:`DeepLearningModel.fit`.

Pure functions over arrays and the spec: each takes the initial flat parameters and returns a
:class:`FitResult` (trained parameters, scoring history); the inputs are not modified and nothing
calls back into the model. The model passes ``score(params) -> dict``, a function of the parameter
vector, and stores what comes back.

Stochastic optimisers run blocks of epochs inside one jitted call
(:func:`kernels.network.train_epochs`) and score between blocks; L-BFGS
drives :func:`kernels.network.loss_and_grad` through scipy. Both stop with a
:class:`TrainingDivergedError` that names the epoch on a non-finite loss or
weight: never silent garbage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from kernels import hyper_vector, loss_and_grad, make_workspace, train_epochs
from pipeline import metrics


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


@dataclass
class FitResult:
    """What a training loop returns.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        The trained flat parameter vector (a new array; the initial one is left as it was).
    history : list of dict
        One entry per scoring event: ``epoch``, ``samples``, ``training_objective`` and the scores.
    message : str or None
        scipy's termination message (L-BFGS only).
    stop_reason : str or None
        Why training ended before ``epochs`` (:func:`stop_reason`); None when it ran them all.
    best_epoch : int or None
        The scoring event whose parameters ``params`` holds when ``overwrite_with_best_model`` restored an
        earlier one; None when ``params`` are the last ones.
    """

    params: np.ndarray
    history: list[dict] = field(default_factory=list)
    message: str | None = None
    stop_reason: str | None = None
    best_epoch: int | None = None
    loop: "LoopState | None" = None


@dataclass
class LoopState:
    """Where :func:`run_stochastic` stands after ``epoch`` epochs: what a continuation resumes from.

    ``params`` are the current (not the best) parameters; ``state``/``counters``/``rho_run`` the optimiser
    moments, (samples seen, steps) and running activations; ``history``, ``best`` and ``reason`` hold only
    the scoring events a run scored every ``interval`` epochs also has (see :func:`run_stochastic`).
    Shuffling and dropout draw from (seed, epoch) counters, so nothing else is needed to go on exactly.
    """

    params: np.ndarray
    state: np.ndarray
    counters: np.ndarray
    rho_run: np.ndarray
    epoch: int
    interval: int
    history: list[dict] = field(default_factory=list)
    best: tuple | None = None
    reason: str | None = None

    @classmethod
    def fresh(cls, params, spec, interval):
        """Epoch 0: ``params`` (copied), zero optimiser state."""
        return cls(params.copy(), np.zeros((2, params.size), dtype=params.dtype), np.zeros(2),
                   np.zeros(max(sum(spec.hidden), 1)), 0, interval)

    def copy(self) -> "LoopState":
        best = None if self.best is None else (self.best[0], self.best[1], self.best[2].copy())
        return LoopState(self.params.copy(), self.state.copy(), self.counters.copy(), self.rho_run.copy(),
                         self.epoch, self.interval, [dict(h) for h in self.history], best, self.reason)


def stopping_key(spec, task: str, entry: dict) -> tuple[str, bool]:
    """(history key, lower is better) of the early-stopping metric for a scoring ``entry``:
    the validation series when the entry has one, else the training series."""
    name = spec.stopping_metric
    if name == "AUTO":
        name = "MSE" if task == "autoencoder" else metrics.default_stopping_metric(task)
    prefix = "validation_" if any(k.startswith("validation_") for k in entry) else "training_"
    return prefix + name, metrics.LOWER_IS_BETTER.get(name, True)


def early_stop(spec, task: str, history: list[dict]) -> bool:
    """Whether ``spec``'s stopping rule (``stopping_rounds``, ``stopping_metric``,
    ``stopping_tolerance``) ends training after the last entry of ``history``."""
    if spec.stopping_rounds == 0:
        return False
    key, lower_is_better = stopping_key(spec, task, history[-1])
    return should_stop(history, key, spec.stopping_rounds, spec.stopping_tolerance, lower_is_better)


def stop_reason(spec, task: str, history: list[dict], deadline: float = math.inf) -> str | None:
    """Why training ends after the last scoring event of ``history`` (None: go on), checked in h2o's
    order: ``classification_stop`` (training misclassification) or ``regression_stop`` (training MSE;
    regression and autoencoders), the ``stopping_rounds`` rule, then the ``max_runtime_secs`` deadline
    (a ``time.monotonic()`` value)."""
    entry, stops = history[-1], spec.resolved_stops
    name, option = ("misclassification", "classification_stop") if task == "classification" else \
        ("MSE", "regression_stop")
    value, limit = entry.get(f"training_{name}"), stops[option]
    if limit >= 0 and value is not None and value <= limit:
        return f"{option}: training {name} {value:.4g} <= {limit:g} at epoch {entry['epoch']}"
    if early_stop(spec, task, history):
        key, _ = stopping_key(spec, task, entry)
        return (f"stopping_rounds: {key} did not improve by stopping_tolerance={spec.stopping_tolerance:g} over "
                f"{spec.stopping_rounds} scoring events, at epoch {entry['epoch']}")
    if time.monotonic() >= deadline:
        return f"max_runtime_secs: {spec.max_runtime_secs:g} s reached at epoch {entry['epoch']}"
    return None


def keep_best(best, spec, task: str, entry: dict, params):
    """``overwrite_with_best_model``'s bookkeeping: (signed value, epoch, copy of params) of the better of
    ``best`` and the scoring event ``entry`` by the stopping metric (validation if scored, else training);
    a later event wins a tie. ``best`` unchanged when the option is off or the value is missing/non-finite."""
    if not spec.resolved_stops["overwrite_with_best_model"]:
        return best
    key, lower_is_better = stopping_key(spec, task, entry)
    value = entry.get(key)
    if value is None or not math.isfinite(value):
        return best
    signed = value if lower_is_better else -value
    if best is None or signed <= best[0]:
        return signed, entry["epoch"], params.copy()
    return best


def _result(params, history, best, reason, message=None) -> FitResult:
    """The FitResult, with ``best``'s parameters when they are not the last ones."""
    if best is not None and history and best[1] != history[-1]["epoch"]:
        return FitResult(best[2], history, message, reason, best[1])
    return FitResult(params, history, message, reason)


def deadline_of(spec) -> float:
    """The ``time.monotonic()`` at which ``max_runtime_secs`` ends training (inf when 0)."""
    return time.monotonic() + spec.max_runtime_secs if spec.max_runtime_secs > 0 else math.inf


def _train_block(params, deadline, *, epoch0, n_epochs, **kernel):
    """Up to ``n_epochs`` epochs of :func:`kernels.network.train_epochs`, returning (epoch losses, epochs
    finished, diverged). Under a deadline the block runs in growing pieces and ends early once the deadline
    has passed; the kernel resumes from ``epoch0`` and its state, so the epochs run are bit for bit those of
    one call."""
    if not math.isfinite(deadline):
        epoch_loss, finished = train_epochs(params, epoch0=epoch0, n_epochs=n_epochs, **kernel)
        return epoch_loss, finished, finished < n_epochs
    losses, ran, piece = [], 0, 1
    while ran < n_epochs and (ran == 0 or time.monotonic() < deadline):
        n, started = min(piece, n_epochs - ran), time.monotonic()
        epoch_loss, finished = train_epochs(params, epoch0=epoch0 + ran, n_epochs=n, **kernel)
        losses.append(epoch_loss)
        ran += finished
        if finished < n:
            return np.concatenate(losses), ran, True
        piece = piece * 2 if time.monotonic() - started < 0.05 else piece
    return np.concatenate(losses), ran, False


def run_stochastic(params, layout, X, Y, spec, *, loss, task, hp, drop, seed, score, progress=None,
                   resume=None, horizon=None) -> FitResult:
    """Mini-batch training with scoring between blocks of epochs.

    Parameters
    ----------
    params : ndarray of shape (n_params,)
        Initial flat parameters (not modified), described by ``layout`` (:func:`kernels.layout.make_layout`).
    X : ndarray of shape (n_samples, n_inputs)
        Scaled inputs; ``Y`` of shape (n_samples, n_outputs), encoded targets.
    spec : ModelSpec
    loss, task : str
        The kernel's loss name; the task picks the AUTO stopping metric.
    hp, drop, seed
        :func:`hyperparameters` of ``spec``, dropout ratios per layer, the shuffle/dropout stream seed.
    score : callable(params) -> dict
        Metrics of a parameter vector, added to each scoring event.
    progress : callable(entry: dict, total_epochs: int), optional
    resume : LoopState, optional
        Go on from this state (not modified; ``params`` is then unused) instead of from epoch 0.
    horizon : int, optional
        Score as a run of ``horizon`` epochs would (``scoring_schedule``): a run of E1 epochs that a later
        run continues to E2 <= horizon then has exactly the scoring events of a straight E2-epoch run.

    Returns
    -------
    FitResult
        ``loop`` is the state to continue from; its history leaves out a final event that a longer run
        would not have (one off the ``interval`` grid).
    """
    total = int(math.ceil(spec.epochs))
    interval = scoring_schedule(spec, max(total, horizon or 0))
    if resume is not None and resume.interval != interval:
        raise ValueError(f"resume: the checkpoint scored every {resume.interval} epochs but this run scores every "
                         f"{interval}; continue with the checkpoint's horizon or score_interval, or train from 0.")
    loop = resume.copy() if resume is not None else LoopState.fresh(params, spec, interval)
    params, history, done, best, reason = loop.params, loop.history, loop.epoch, loop.best, loop.reason
    before, deadline = best, deadline_of(spec)
    while done < total and reason is None:
        block = min(interval - done % interval, total - done)
        epoch_loss, finished, diverged = _train_block(
            params, deadline, layout=layout, X=X, Y=Y, state=loop.state, counters=loop.counters, epoch0=done,
            n_epochs=block, batch_size=spec.mini_batch_size, loss=loss, optimizer=spec.resolved_optimizer, hp=hp,
            drop=drop, seed=seed, shuffle=spec.shuffle_training_data, rho_run=loop.rho_run)
        if diverged:
            raise TrainingDivergedError(done + finished + 1, float(epoch_loss[finished]), DIVERGENCE_HINT)
        done += finished
        entry = {"epoch": done, "samples": float(loop.counters[0]), "training_objective": float(epoch_loss[-1])}
        entry.update(score(params))
        history.append(entry)
        if progress is not None:
            progress(entry, total)
        before, best = best, keep_best(best, spec, task, entry, params)
        reason = stop_reason(spec, task, history, deadline)
    on_grid = not history or history[-1]["epoch"] % interval == 0
    after = LoopState(params.copy(), loop.state, loop.counters, loop.rho_run, done, interval,
                      list(history) if on_grid else history[:-1], best if on_grid else before,
                      reason if on_grid else None)
    result = _result(params, history, best, reason if done < total else None)
    result.loop = after
    return result


def run_lbfgs(params, layout, X, Y, spec, *, loss, hp, score, progress=None, task="regression") -> FitResult:
    """Full-batch L-BFGS (scipy) over the flat vector, in float64 (UFLDL's minFunc).

    Parameters are those of :func:`run_stochastic` (no dropout, seed or stopping_rounds rule);
    ``params`` is not modified. The result's ``message`` is scipy's. ``classification_stop``,
    ``regression_stop`` and ``overwrite_with_best_model`` act at scoring events when set (they are off
    by default here), ``max_runtime_secs`` after any iteration.
    """
    from scipy.optimize import minimize

    params = params.copy()
    total = int(math.ceil(spec.epochs))
    interval = scoring_schedule(spec, total)
    X64, Y64 = np.ascontiguousarray(X, np.float64), np.ascontiguousarray(Y, np.float64)
    workspace = make_workspace(layout, X64.shape[0], np.float64)
    history: list[dict] = []
    iteration, state, deadline = [0], {"best": None, "reason": None}, deadline_of(spec)

    def objective(theta):
        value, grad = loss_and_grad(np.ascontiguousarray(theta), layout, X64, Y64, loss, hp, workspace=workspace)
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            raise TrainingDivergedError(iteration[0] + 1, value, DIVERGENCE_HINT)
        return value, grad

    def scored(objective_value):
        entry = {"epoch": iteration[0], "samples": float(iteration[0] * X.shape[0]),
                 "training_objective": float(objective_value)}
        entry.update(score(params))
        history.append(entry)
        return entry

    def callback(intermediate_result):
        iteration[0] += 1
        params[:] = intermediate_result.x  # in the model's dtype, as the scores see it
        if iteration[0] % interval == 0 or iteration[0] == total or time.monotonic() >= deadline:
            entry = scored(intermediate_result.fun)
            if progress is not None:
                progress(entry, total)
            state["best"] = keep_best(state["best"], spec, task, entry, params)
            state["reason"] = stop_reason(spec, task, history, deadline) if iteration[0] < total else None
            if state["reason"]:
                raise StopIteration  # scipy >= 1.11 ends the minimisation and returns the current point

    result = minimize(objective, params.astype(np.float64), jac=True, method="L-BFGS-B", callback=callback,
                      options={"maxiter": total, "maxcor": 20})
    params[:] = result.x
    if not history or history[-1]["epoch"] != iteration[0]:
        state["best"] = keep_best(state["best"], spec, task, scored(result.fun), params)
    return _result(params, history, state["best"], state["reason"], str(result.message))
