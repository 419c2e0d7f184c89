"""MLflow basic auth with and without ``auth_cache_ttl_seconds``: child-run-like request loops against real servers.

One "child" = create run + one ``log_batch`` (10 params, 50 metric steps) + terminate, as the pipeline user, the way
a sweep worker logs a trial. Each configuration gets its own ``mlflow server --workers 1 --app-name basic-auth`` on a
local PostgreSQL (``app.services``); the server's CPU seconds per request come from its process tree (psutil).
Prints a Markdown table.

    python benchmarks/bench_auth_cache.py [--children 40] [--writers 1,2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

REQUESTS_PER_CHILD = 3


def _children(uri: str, user: tuple[str, str], exp_id: str, n: int, out) -> None:
    os.environ.update(MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])
    sys.stdout = open(os.devnull, "w")  # MLflow prints a "View run" line per finished run: not the report's
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    c = MlflowClient(tracking_uri=uri)
    t0 = time.perf_counter()
    for i in range(n):
        run = c.create_run(exp_id)
        c.log_batch(run.info.run_id, params=[Param(f"p{k}", str(k)) for k in range(10)],
                    metrics=[Metric("loss", 1.0 / (s + 1), 0, s) for s in range(50)])
        c.set_terminated(run.info.run_id)
    out.put(time.perf_counter() - t0)


def _server_cpu(state: Path) -> float:
    from app.services import read_state

    pid = read_state(state)["processes"]["mlflow-server"]["pid"]
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def measure(ttl: int, n_children: int, writers: list[int]) -> list[dict]:
    from app.services import pipeline_credentials, start_mlflow, start_postgres, stop_services
    from app.services.postgres import database_url

    base = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    base.chmod(0o711)
    state = base / "state"
    rows = []
    try:
        pg = start_postgres(state)
        info = start_mlflow(state, auth=True, auth_cache_ttl=ttl, timeout=240,
                            backend_store_uri=database_url(state, pg, "mlflow", "psycopg2"))
        user = pipeline_credentials(state)
        os.environ.update(MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])
        from mlflow import MlflowClient

        exp_id = MlflowClient(tracking_uri=info["tracking_uri"]).create_experiment(f"auth-cache-{ttl}")
        for n_writers in writers:
            per = max(1, n_children // n_writers)
            cpu0, t0 = _server_cpu(state), time.perf_counter()
            queue = mp.Queue()
            ps = [mp.Process(target=_children, args=(info["tracking_uri"], user, exp_id, per, queue))
                  for _ in range(n_writers)]
            for p in ps:
                p.start()
            for p in ps:
                p.join(timeout=1800)
            wall = time.perf_counter() - t0
            cpu = _server_cpu(state) - cpu0
            total = per * n_writers
            rows.append({"ttl": ttl, "writers": n_writers, "children": total, "per_s": total / wall,
                         "cpu_ms_per_request": 1000 * cpu / (total * REQUESTS_PER_CHILD)})
    finally:
        stop_services(state)
        shutil.rmtree(base, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=40)
    parser.add_argument("--writers", default="1,2")
    args = parser.parse_args()
    writers = [int(w) for w in args.writers.split(",")]
    rows = [r for ttl in (0, 60) for r in measure(ttl, args.children, writers)]
    print("| auth_cache_ttl_seconds | writer processes | children | children/s | server CPU ms per request |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ttl']} | {r['writers']} | {r['children']} | {r['per_s']:.1f} | {r['cpu_ms_per_request']:.1f} |")


if __name__ == "__main__":
    main()
