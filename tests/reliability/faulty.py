"""A trial function for fault injection: the real ``pipeline.train.run_training``, except that the trial
whose ``model.seed`` is :data:`FAULT_SEED` raises and the one whose seed is :data:`GROW_SEED` grows its memory
until its worker is killed. Passed to ``sweepnet sweep --train-fn`` (a hidden test hook)."""

from __future__ import annotations

import time

import numpy as np

from pipeline.train import run_training

FAULT_SEED = 4242
MESSAGE = f"injected fault: the trial with model.seed={FAULT_SEED} raises"
GROW_SEED = 4343
#: The grown memory stops here (far above any test worker's --memory-limit) if nothing killed the worker.
GROW_CAP = 4 * 2**30


def grow_memory(step: int = 32 * 2**20, pause: float = 0.05) -> None:
    """Allocate and touch ``step`` bytes every ``pause`` seconds, keeping all of it, as a leak does; raises
    ``RuntimeError`` at :data:`GROW_CAP` (the worker should have been killed long before)."""
    held = []
    while sum(a.nbytes for a in held) < GROW_CAP:
        held.append(np.ones(step // 8))  # ones, not zeros: the pages are written, so they are resident
        time.sleep(pause)
    raise RuntimeError(f"grew {GROW_CAP / 2**30:.0f} GiB and the worker was not killed: no memory limit?")


def train(config, progress=None, data=None):
    """``run_training(config)``; raises ``RuntimeError`` for ``model.seed == FAULT_SEED``; grows memory without
    end (:func:`grow_memory`) for ``model.seed == GROW_SEED``."""
    if config.get("model", {}).get("seed") == FAULT_SEED:
        raise RuntimeError(MESSAGE)
    if config.get("model", {}).get("seed") == GROW_SEED:
        grow_memory()
    return run_training(config, progress=progress, data=data)
