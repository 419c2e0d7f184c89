"""Per-child cost of an MLflow model (``pipeline.model_logging.log_model``) on the sqlite store.

Logs ``--children`` children of one sweep the way a worker does (``tracking.log_child`` with a 50-event
history), then an MLflow model for each (create the logged model, write the pyfunc folder with its signature
and input example, upload, finalize, link to the run). Prints medians of wall and CPU time after ``--warmup``
children, and the load average (wall time on a shared machine is mostly waiting). Usage::

    python benchmarks/bench_model_logging.py [--children 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path


def measure(folder: Path, children: int, warmup: int) -> dict:
    from pipeline import model_logging, tracking
    from pipeline.datasets import load_data
    from pipeline.sweep.runner import model_file_extra
    from pipeline.train import run_training

    config = {"name": "x", "data": {"source": "xor"},
              "model": {"hidden": [3], "epochs": 50, "distribution": "bernoulli"}}
    data = load_data(config["data"])
    result = run_training(config, data=data)
    result.input_rows = data.X_train[:3]
    weights = result.model.save(folder / "weights.npz", extra=model_file_extra(result))
    ctx = tracking.open_sweep(tracking.default_tracking_uri(folder), "bench", "bench", "bench", {},
                              artifact_root=folder / "artifacts")
    rows = {"child": ([], []), "model": ([], [])}
    for i in range(children + warmup):
        wall, cpu = time.perf_counter(), time.process_time()
        run_id = tracking.log_child(ctx, f"k{i}", f"child {i}", config, {}, result.history, result.metrics, None)
        child = (time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        model_logging.log_model(ctx.tracking_uri, ctx.experiment_id, run_id, weights)
        model = (time.perf_counter() - wall, time.process_time() - cpu)
        if i >= warmup:
            for name, (w, c) in (("child", child), ("model", model)):
                rows[name][0].append(w)
                rows[name][1].append(c)
    return {name: (1000 * statistics.median(w), 1000 * statistics.median(c)) for name, (w, c) in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), args.children, args.warmup)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {args.children} children\n")
    print("| per child (sqlite store) | wall median (ms) | CPU median (ms) |\n|---|---|---|")
    print(f"| child run (params, 50-event history, tags) | {result['child'][0]:.0f} | {result['child'][1]:.0f} |")
    print(f"| + MLflow model (log_model) | {result['model'][0]:.0f} | {result['model'][1]:.0f} |")


if __name__ == "__main__":
    main()
