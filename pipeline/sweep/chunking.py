"""How a sweep's trials are cut into chunks, one Prefect task each (``expand`` re-exports these names).

A task costs ~0.2 s of orchestration, so an automatic chunk carries ~``chunk_seconds`` of training; every
worker gets at least two tasks; and it never makes more than :data:`MAX_TASKS` tasks of one rung (or wave).
"""

from __future__ import annotations

import math


#: Most Prefect tasks an automatic chunk size gives one rung (or wave) of a sweep: each task costs the driver
#: ~0.2 s of orchestration and the Dask scheduler memory (a 400k-task map exhausted it), so a 10^6-trial
#: sweep of 2 s trials runs as 10^4 tasks of 100 trials rather than 10^5 of 10. A fixed ``chunk_size`` in the
#: spec is not capped (the driver warns when it makes more tasks than this).
MAX_TASKS = 10_000


def auto_chunk_size(n_trials: int, trial_secs: float, n_workers: int, target_secs: float = 20.0,
                    max_tasks: int = MAX_TASKS) -> int:
    """Trials per Prefect task so a task carries ~``target_secs`` (a task costs ~0.2-0.5 s of
    orchestration) yet every worker gets at least two tasks, and :func:`chunk` makes at most ``max_tasks``
    tasks of ``n_trials`` (bigger chunks when needed; with more than ``max_tasks / 2`` workers the cap wins
    over the two tasks per worker, but every worker still gets one)."""
    by_time = max(1, int(target_secs / max(trial_secs, 1e-6)))
    balance = max(1, math.ceil(n_trials / (2 * max(n_workers, 1))))
    return max(min(by_time, balance), min_chunk_size(n_trials, n_workers, max_tasks))


def min_chunk_size(n_trials: int, n_workers: int = 1, max_tasks: int = MAX_TASKS) -> int:
    """The smallest chunk size at which :func:`chunk` makes at most ``max_tasks`` tasks of ``n_trials`` (it rounds
    the count up to a multiple of ``n_workers``; more workers than ``max_tasks``: one task per worker)."""
    workers = max(n_workers, 1)
    if n_trials <= max(max_tasks, workers):  # one trial per task is already few enough
        return 1
    return math.ceil(n_trials / max(workers, max_tasks // workers * workers))


def n_chunks(n_trials: int, size: int, n_workers: int = 1) -> int:
    """How many chunks :func:`chunk` makes of ``n_trials`` at ``size``: ceil(n / size) rounded up to a
    multiple of ``n_workers``, at most one per trial."""
    if size <= 0:
        raise ValueError(f"chunk size = {size} must be positive")
    workers = max(n_workers, 1)
    tasks = -(-n_trials // size)
    return min(n_trials, -(-tasks // workers) * workers)


def chunk(trials: list, size: int, n_workers: int = 1) -> list[list]:
    """Split ``trials`` into consecutive chunks of at most ``size``, as even as possible.

    The number of chunks is rounded up to a multiple of ``n_workers`` and the sizes differ by at most
    one, so the last round of tasks does not leave workers idle (16 trials, size 6, 2 workers:
    4 chunks of 4, not 6 + 6 + 4).
    """
    count = n_chunks(len(trials), size, n_workers)
    if not trials:
        return []
    base, extra = divmod(len(trials), count)
    out, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        out.append(trials[start:stop])
        start = stop
    return out
