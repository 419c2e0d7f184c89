"""A trial function that returns at once, for benchmarks that measure recording, not training.

``sweepnet sweep SPEC --train-fn benchmarks._stub_train:train``: the first call in a process trains the
configuration for one epoch (a real :class:`pipeline.train.TrainResult`: model, history, final metrics); every
call returns that result again with the trial's config, so the objective is the same for every trial (the
summary's retraining of the best trial reproduces it) and a trial costs microseconds.
"""

from __future__ import annotations

import copy
import dataclasses

_RESULT = None


def train(config: dict):
    """The cached one-epoch result of the first config seen in this process, carrying ``config``."""
    global _RESULT
    if _RESULT is None:
        from pipeline.train import run_training

        short = copy.deepcopy(config)
        short.setdefault("model", {})["epochs"] = 1
        _RESULT = run_training(short)
    return dataclasses.replace(_RESULT, config=config)
