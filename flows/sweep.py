"""The sweep flow: validate -> gradient check -> parent run -> warm-up -> chunks on Dask -> summary.

Thin wiring only; every step is a function of ``pipeline.sweep`` and the cluster plumbing lives in
``flows.cluster``. Run it through the command line (``sweepnet sweep SPEC``, which starts one local Prefect
server first) or from Python::

    from flows import run_sweep
    run_sweep("examples/sweeps/xor_census.yaml", store_dir=".sweepnet")

Without ``dask_address`` (or ``SWEEPNET_DASK_ADDRESS``) an embedded ``LocalCluster`` of single-threaded
worker processes on 127.0.0.1 is started for the run and closed after it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows import cluster
from flows.artifacts import publish_summary
from pipeline import tracking
from pipeline.sweep import TrialOutcome, collect, driver, feed, runner
from pipeline.uris import redact_uri


def _io_error(task_, task_run, state) -> bool:
    """Retry a chunk only for I/O errors (tracking store unreachable); trial errors are already caught."""
    try:
        state.result()
    except (OSError, TimeoutError):
        return True
    except BaseException:
        return False
    return False


@task(name="run-chunk", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=_io_error)
def run_chunk(trials: list, ctx: tracking.TrackingContext, options: runner.ChunkOptions) -> list[TrialOutcome]:
    """Train and log one chunk of trials (seconds of work) on a Dask worker."""
    return runner.run_chunk(trials, ctx, options, memory_limit=cluster.worker_memory_limit())


@task(name="prepare-sweep", cache_policy=NO_CACHE)
def prepare(spec: str | dict[str, Any], store_dir: str, tracking_uri: str | None, n_workers: int, train_fn: str,
            check_gradient: bool, reuse_older: bool = False, lease_wait: float = 0.0) -> driver.SweepPlan:
    """Validate, gradient-check, open the parent run, warm the Numba cache, expand and size chunks."""
    return driver.prepare(spec, store_dir, tracking_uri, n_workers, train_fn, check_gradient, reuse_older,
                          lease_wait)


@task(name="summarise-sweep", cache_policy=NO_CACHE)
def summarise(plan: driver.SweepPlan, rows: list[dict], out_dir: str | None) -> dict:
    """Leaderboard, census and plots on the parent run; best child tagged."""
    return collect.finish(plan, rows, out_dir)


@flow(name="sweepnet-sweep")
def sweep_flow(spec: str | dict[str, Any], store_dir: str = ".sweepnet", tracking_uri: str | None = None,
               dask_address: str | None = None, n_workers: int = 2, worker_timeout: float = 120.0,
               out_dir: str | None = None, train_fn: str = runner.TRAIN_FN, check_gradient: bool = True,
               reuse_older: bool = False, lease_wait: float = 0.0) -> dict:
    """One sweep end to end; returns the summary counts (failures included; see ``collect.finish``)
    and ``timing``: seconds spent preparing, fanning out, summarising, the summed trial compute and the
    summed per-trial logging (MLflow children and their artifacts, on the workers)."""
    t0 = time.perf_counter()
    plan = prepare(spec, store_dir, tracking_uri, n_workers, train_fn, check_gradient, reuse_older, lease_wait)
    timing = {"prepare_s": time.perf_counter() - t0, "fanout_s": 0.0, "trial_compute_s": 0.0, "trial_logging_s": 0.0,
              "chunks": 0}
    rows: list[dict] = []
    _import_in_background("pipeline.plots")  # matplotlib loads while the workers train, not after them
    try:
        while plan is not None:
            t1 = time.perf_counter()
            if feed.is_adaptive(plan):  # Optuna / ASHA: new chunks as results arrive, one pass
                collector = feed.Feed(plan, feed.scheduler_for(plan))
                chunks = _fan_out(collector, plan, dask_address, worker_timeout)
                plan = collector.plan
            else:
                chunks = driver.pending_chunks(plan)
                collector = collect.Collector(plan, chunks)
                _fan_out_window(chunks, collector, plan, dask_address, worker_timeout)
            rung_rows = collector.rows()
            rows += rung_rows
            timing["fanout_s"] += time.perf_counter() - t1
            timing["chunks"] += len(chunks)
            timing["trial_compute_s"] += sum(o.seconds for o in collector.outcomes.values())
            timing["trial_logging_s"] += sum(o.log_seconds for o in collector.outcomes.values())
            last, plan = plan, None if feed.is_adaptive(plan) else driver.next_rung(plan, rung_rows)
    except BaseException:
        tracking.close_sweep(plan.ctx, failed=True)
        driver.release_lease(plan)
        raise
    t2 = time.perf_counter()
    try:
        result = summarise(last, rows, out_dir)
    except BaseException:  # the summary broke: the parent is not left RUNNING, the lease not held
        tracking.close_sweep(last.ctx, failed=True)
        driver.release_lease(last)
        raise
    timing.update(summary_s=time.perf_counter() - t2, chunk_size=last.chunk_size, probe_trial_s=last.trial_secs)
    publish_summary(last.spec.name, result)  # after the parent is closed and the champion registered
    return {**result, "timing": timing}


def _import_in_background(module: str) -> None:
    """Import ``module`` in a daemon thread: the driver mostly waits during the fan-out, the summary needs it."""
    import importlib
    import threading

    def load() -> None:
        try:
            importlib.import_module(module)
        except Exception:  # the summary imports it again and reports a real failure there
            pass

    threading.Thread(target=load, daemon=True, name=f"import-{module}").start()


#: Chunks out on the cluster per worker. A Prefect task future costs the driver ~80 KB and ~0.1 s to submit
#: (measured with 300-3,000 futures), so a rung's chunks go out as workers free up, not in one ``map``:
#: a 10^4-chunk rung would hold ~0.8 GB of futures and block for minutes before the first result was read.
IN_FLIGHT_PER_WORKER = 4


def _fan_out_window(chunks: list, collector: collect.Collector, plan: driver.SweepPlan, dask_address: str | None,
                    worker_timeout: float) -> None:
    """Run ``chunks`` with at most :data:`IN_FLIGHT_PER_WORKER` per worker submitted at a time; one more goes out
    each time one finishes."""
    queue = collections.deque(chunks)

    def submit(n: int) -> list:
        batch = [queue.popleft() for _ in range(min(n, len(queue)))]
        return list(zip(run_chunk.map(batch, unmapped(plan.ctx), unmapped(plan.options)), batch)) if batch else []

    first = submit(max(1, IN_FLIGHT_PER_WORKER * plan.n_workers))
    cluster.drain([f for f, _ in first], [c for _, c in first], collector, dask_address, worker_timeout,
                  poll=0.5 if queue else 2.0, refill=lambda: submit(1))


def _fan_out(source: feed.Feed, plan: driver.SweepPlan, dask_address: str | None, worker_timeout: float) -> list:
    """Submit the feed's chunks, and the chunks it queues in response, until it has none left; the
    adaptive study's plots go on the parent. Returns every chunk submitted."""
    submitted: list = []

    def submit() -> list:
        chunks = source.take()
        submitted.extend(chunks)
        return list(zip(run_chunk.map(chunks, unmapped(plan.ctx), unmapped(plan.options)), chunks)) if chunks else []

    first = submit()
    cluster.drain([f for f, _ in first], [c for _, c in first], source, dask_address, worker_timeout, poll=0.25,
                  refill=submit)
    feed.log_study(source)
    return submitted


def run_sweep(spec: str | dict[str, Any], store_dir: str = ".sweepnet", dask_address: str | None = None,
              n_workers: int | None = None, worker_timeout: float = 120.0, out_dir: str | None = None,
              train_fn: str = runner.TRAIN_FN, check_gradient: bool = True, reuse_older: bool = False,
              lease_wait: float = 0.0) -> dict:
    """Run ``sweep_flow`` on an existing scheduler (``dask_address`` or ``SWEEPNET_DASK_ADDRESS``) or on an
    embedded LocalCluster (closed afterwards); MLflow at ``MLFLOW_TRACKING_URI`` or ``STORE/mlflow.db``.

    ``reuse_older``: reuse trial results computed by older code (``--reuse-older``); ``lease_wait``: seconds
    to wait while another run of the same sweep holds it (0: refuse at once); see ``driver.prepare``."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    with cluster.task_runner(dask_address, n_workers) as c:
        return sweep_flow.with_options(task_runner=c.task_runner)(
            spec=spec if isinstance(spec, dict) else str(spec), store_dir=str(store_dir), tracking_uri=tracking_uri,
            dask_address=c.address, n_workers=c.n_workers, worker_timeout=worker_timeout, out_dir=out_dir,
            train_fn=train_fn, check_gradient=check_gradient, reuse_older=reuse_older, lease_wait=lease_wait)


@flow(name="sweepnet-scheduled-sweep")
def scheduled_sweep(spec: dict[str, Any] | str, store: str | None = None, n_workers: int | None = None,
                    worker_timeout: float = 120.0, store_dir: str | None = None) -> dict:
    """Entry point of ``sweepnet deploy`` deployments: one sweep as a subflow.

    ``spec`` is the resolved sweep inline (``flows.deploy.inline_spec``) or, for older deployments, a path
    on the worker. ``store`` is a tracking URI; without it the worker's own ``MLFLOW_TRACKING_URI`` is used,
    else ``store_dir`` (a directory on the worker, as older deployments pass) or ``~/.sweepnet``.
    """
    where = os.path.dirname(os.path.abspath(__file__))
    named = store or os.environ.get("MLFLOW_TRACKING_URI") or store_dir or "~/.sweepnet"
    get_run_logger().info("sweepnet flows from %s; store %s", where, redact_uri(named))
    folder = store_dir or str(Path.home() / ".sweepnet")  # a flow run's working directory is temporary
    if store and store.startswith("sqlite:///"):
        folder = str(Path(store[len("sqlite:///"):].split("?")[0]).parent)  # artifacts beside the database
    with _tracking_env(store):
        result = run_sweep(spec, folder, n_workers=n_workers, worker_timeout=worker_timeout)
    if result["trials_failed"] or result["trials_missing"]:
        print(f"sweep finished with {result['trials_failed']} failed and {result['trials_missing']} missing trials")
    return result


@contextlib.contextmanager
def _tracking_env(uri: str | None):
    """``MLFLOW_TRACKING_URI`` = ``uri`` for the block: the driver and the embedded Dask workers it spawns
    (which inherit the environment and log with their own URI) then agree on the store."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
