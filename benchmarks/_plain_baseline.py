"""The plain baseline of ``bench_sweep --part overhead``: the sweep's own trials run by N plain processes.

No Prefect, Dask or MLflow: a ``multiprocessing`` pool of ``workers`` spawned processes, each warmed (imports
and the Numba cache loaded) before the clock starts, runs ``run_training`` on the trials' exact configurations
(``driver.validate`` expands the same spec), one trial per task. Its wall is what the same hardware needs for
the same work with no orchestration at all; the sweep is measured against it in the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time


def _warm(config: dict) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pipeline.train import run_training

    short = {**config, "model": {**config["model"], "epochs": 1}}
    run_training(short)


def _one(config: dict) -> float:
    from pipeline.train import run_training

    t0 = time.perf_counter()
    run_training(config)
    return time.perf_counter() - t0


def run_baseline(spec: dict, workers: int = 2) -> dict:
    """Wall of the spec's trials on ``workers`` plain processes, and the summed trial seconds inside them."""
    from pipeline.sweep import driver

    _, trials = driver.validate(spec)
    configs = [t.config for t in trials]
    ctx = mp.get_context("spawn")
    t_start = time.perf_counter()
    with ctx.Pool(workers, initializer=_warm, initargs=(configs[0],)) as pool:
        pool.map(_warm, [configs[0]] * workers, chunksize=1)  # every process warm before the clock starts
        t0 = time.perf_counter()
        seconds = pool.map(_one, configs, chunksize=1)
        wall = time.perf_counter() - t0
    return {"trials": len(configs), "wall_s": wall, "with_start_s": time.perf_counter() - t_start,
            "trial_sum_s": sum(seconds), "workers": workers}
