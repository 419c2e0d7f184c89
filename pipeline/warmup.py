"""Warm Numba's on-disk cache before a fan-out (and at image build time).

Numba caches compiled kernels beside their source, keyed on path and mtime.
Many workers compiling the same kernels at once is slow (STACK.md: 8 cold
processes took 55 s), so the driver compiles once here and the workers load
the cache (~5 ms per function).

Run ``python -m pipeline.warmup`` to compile the float32 and float64 paths.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def warm(config=None) -> float:
    """Compile the training kernels a config will use by training a tiny copy of it.

    Parameters
    ----------
    config : TrainConfig, dict or path, optional
        Without one, warm the generic float32 and float64 paths (online and
        mini-batch drivers).

    Returns
    -------
    seconds : float
        Time spent (compiling or loading from cache).
    """
    from pipeline.config import load_config
    from pipeline.model import DeepLearningModel

    start = time.perf_counter()
    specs = []
    if config is not None:
        specs.append(load_config(config).model)
    else:
        from pipeline.config import ModelSpec

        specs += [ModelSpec(activation=a, hidden=[3], dtype=d) for a in ("Tanh", "RectifierWithDropout")
                  for d in ("float32", "float64")]
    rng = np.random.default_rng(0)
    for spec in specs:
        tiny = spec.model_copy(update={"hidden": [min(h, 3) for h in spec.hidden], "epochs": 1,
                                       "hidden_dropout_ratios": spec.hidden_dropout_ratios and
                                       [0.5] * len(spec.hidden), "stopping_rounds": 0})
        X = rng.normal(size=(8, 4))
        y = None if tiny.autoencoder else np.array([0, 1] * 4)
        if tiny.sparsity_beta > 0:
            X = rng.uniform(0.1, 0.9, size=(8, 4))
        # Batch 1 trains a small net with the fused online driver and a large one with the mini-batch
        # driver (kernels.online.supports_online); the tiny copy cannot tell which, so warm both.
        for batch in (1, 2) if tiny.mini_batch_size == 1 else (tiny.mini_batch_size,):
            DeepLearningModel(tiny.model_copy(update={"mini_batch_size": batch})).fit(
                X, y, classes=None if y is None else [0, 1])
    return time.perf_counter() - start


if __name__ == "__main__":
    seconds = warm(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"numba cache warm ({seconds:.1f}s)")
