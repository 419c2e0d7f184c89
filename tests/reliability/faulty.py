"""A trial function for fault injection: the real ``pipeline.train.run_training``, except that the trial
whose ``model.seed`` is :data:`FAULT_SEED` raises. Passed to ``sweepnet sweep --train-fn`` (a hidden test hook)."""

from __future__ import annotations

from pipeline.train import run_training

FAULT_SEED = 4242
MESSAGE = f"injected fault: the trial with model.seed={FAULT_SEED} raises"


def train(config, progress=None, data=None):
    """``run_training(config)``; raises ``RuntimeError`` for ``model.seed == FAULT_SEED``."""
    if config.get("model", {}).get("seed") == FAULT_SEED:
        raise RuntimeError(MESSAGE)
    return run_training(config, progress=progress, data=data)
