"""Shared by the MLflow benchmarks (bench_auth_cache, bench_tracking): a Postgres-backed auth server, child loops.

One "child" = create run + one ``log_batch`` (10 params, 50 metric steps) + terminate, as the pipeline user, the way
a sweep worker logs a trial (:data:`REQUESTS_PER_CHILD` requests). The server's CPU seconds come from its process
tree (psutil): the ``mlflow server`` command, uvicorn's supervisor and its workers.
"""

from __future__ import annotations

import contextlib
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
    for _ in range(n):
        run = c.create_run(exp_id)
        c.log_batch(run.info.run_id, params=[Param(f"p{k}", str(k)) for k in range(10)],
                    metrics=[Metric("loss", 1.0 / (s + 1), 0, s) for s in range(50)])
        c.set_terminated(run.info.run_id)
    out.put(time.perf_counter() - t0)


def server_cpu(state: Path) -> float:
    """User + system CPU seconds so far of the recorded ``mlflow server`` and its descendants."""
    from app.services import read_state

    pid = read_state(state)["processes"]["mlflow-server"]["pid"]
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


@contextlib.contextmanager
def auth_server(ttl: int = 60, workers: int = 1):
    """A local PostgreSQL + ``mlflow server --app-name basic-auth --workers N`` in a temporary state directory.

    Yields ``(state_dir, info, user)``: the server info of ``start_mlflow`` and the pipeline user's credentials
    (also exported to this process's environment). Everything is stopped (by PID) and removed afterwards.
    """
    from app.services import pipeline_credentials, start_mlflow, start_postgres, stop_services
    from app.services.postgres import database_url

    base = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    base.chmod(0o711)  # PostgreSQL runs as its own user
    state = base / "state"
    try:
        pg = start_postgres(state)
        info = start_mlflow(state, auth=True, auth_cache_ttl=ttl, timeout=240, workers=workers,
                            backend_store_uri=database_url(state, pg, "mlflow", "psycopg2"))
        user = pipeline_credentials(state)
        os.environ.update(MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])
        yield state, info, user
    finally:
        stop_services(state)
        shutil.rmtree(base, ignore_errors=True)


def children_per_second(state: Path, uri: str, user: tuple[str, str], exp_id: str, n_children: int,
                        n_writers: int) -> dict:
    """``n_writers`` processes logging ``n_children`` children in all: children/s and server CPU ms per request."""
    per = max(1, n_children // n_writers)
    cpu0, t0 = server_cpu(state), time.perf_counter()
    queue = mp.Queue()
    ps = [mp.Process(target=_children, args=(uri, user, exp_id, per, queue)) for _ in range(n_writers)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(timeout=1800)
    wall = time.perf_counter() - t0
    cpu = server_cpu(state) - cpu0
    failed = [p.exitcode for p in ps if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {n_writers} writer processes failed (exit codes {failed}); "
                           "their traceback is on stderr above")
    total = per * n_writers
    return {"writers": n_writers, "children": total, "per_s": total / wall,
            "cpu_ms_per_request": 1000 * cpu / (total * REQUESTS_PER_CHILD)}


def new_experiment(uri: str, name: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri).create_experiment(name)
