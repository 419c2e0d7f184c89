"""Measure local service start-up and MLflow write costs; prints a Markdown report.

Run: .venv/bin/python infra/local/measure_services.py [--repeats 2] [--runs 300]
The numbers feed docs/scaling.md. Everything runs on 127.0.0.1 under a temporary directory
and is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from app.services import start_services, stop_services


def _startup(name: str, tmp: Path, repeats: int, **kw) -> list[tuple[float, float]]:
    """(seconds to ready, seconds to stop) for ``repeats`` cold starts of one service."""
    out = []
    for i in range(repeats):
        sdir = tmp / f"{name}-{i}"
        svc = start_services([name.split("+")[0]], state_dir=sdir, **kw)
        t0 = time.monotonic()
        stop_services(sdir)
        out.append((svc.startup_s[name.split("+")[0]], time.monotonic() - t0))
    return out


def _mlflow_costs(uri: str, n_runs: int) -> dict[str, float]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"measure-{secrets.token_hex(4)}")
    run_id = client.create_run(exp).info.run_id
    n_single = 200
    t0 = time.perf_counter()
    for step in range(n_single):
        client.log_metric(run_id, "single", 1.0 / (step + 1), step=step)
    single_ms = (time.perf_counter() - t0) / n_single * 1e3
    n_batch = 1000  # the REST limit per log_batch call is 1000 metrics
    now = int(time.time() * 1000)
    metrics = [Metric("batched", 1.0 / (s + 1), now, s) for s in range(n_batch)]
    t0 = time.perf_counter()
    client.log_batch(run_id, metrics=metrics)
    batch_ms = (time.perf_counter() - t0) / n_batch * 1e3
    t0 = time.perf_counter()
    quiet = contextlib.redirect_stdout(io.StringIO())  # set_terminated prints a URL per run
    with quiet:
        _create_runs(client, exp, n_runs, now)
    run_ms = (time.perf_counter() - t0) / n_runs * 1e3
    t0 = time.perf_counter()
    found = client.search_runs([exp], max_results=1000, order_by=["metrics.loss ASC"])
    search_ms = (time.perf_counter() - t0) * 1e3
    return {"log_metric_ms_per_value": single_ms, "log_batch_ms_per_value": batch_ms,
            "run_lifecycle_ms": run_ms, "search_runs_ms": search_ms, "search_runs_n": len(found)}


def _create_runs(client, exp: str, n_runs: int, now: int) -> None:
    """One finished run per trial: create, one batched write, terminate."""
    from mlflow.entities import Metric

    for i in range(n_runs):
        rid = client.create_run(exp, tags={"trial": str(i)}).info.run_id
        client.log_batch(rid, metrics=[Metric("loss", 1.0 / (i + 1), now, 0)],
                         params=[])
        client.set_terminated(rid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300, help="runs created for the search timing")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    os.environ.setdefault("MLFLOW_AUTH_ADMIN_PASSWORD", secrets.token_urlsafe(18))
    with tempfile.TemporaryDirectory(prefix="sweepnet-measure-") as tmp:
        tmp = Path(tmp)
        rows = {
            "dask (scheduler + 2 workers)": _startup("dask", tmp, args.repeats, dask_workers=2),
            "mlflow (lean, sqlite)": _startup("mlflow", tmp, args.repeats),
            "mlflow (basic auth)": _startup("mlflow", tmp, args.repeats, mlflow_auth=True),
            "prefect (server + process worker)": _startup("prefect", tmp, args.repeats,
                                                          prefect_ui=False),
        }
        t0 = time.monotonic()
        svc = start_services(state_dir=tmp / "all", prefect_ui=False)
        all_up = time.monotonic() - t0
        costs = _mlflow_costs(svc.mlflow_tracking_uri, args.runs)
        t0 = time.monotonic()
        stop_services(tmp / "all")
        all_down = time.monotonic() - t0
    print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| service | start to ready (s), each run | median | stop (s) |\n|---|---|---|---|")
    for name, vals in rows.items():
        ups = [u for u, _ in vals]
        print(f"| {name} | {', '.join(f'{u:.1f}' for u in ups)} | {statistics.median(ups):.1f} "
              f"| {statistics.median(d for _, d in vals):.1f} |")
    print(f"| all three, concurrently | {all_up:.1f} | | {all_down:.1f} |\n")
    print("| MLflow over HTTP (lean server, SQLite) | value |\n|---|---|")
    for key, value in costs.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
