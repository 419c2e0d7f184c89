"""The sweep flow: validate -> gradient check -> parent run -> warm-up -> chunks on Dask -> summary.

Thin wiring only; every step is a function of ``pipeline.sweep``. Run it through the CLI
(``sweepnet sweep SPEC``), which starts one local Prefect server first, or directly::

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.sweep examples/sweeps/xor_census.yaml

Without ``--dask-address`` (or ``SWEEPNET_DASK_ADDRESS``) an embedded ``LocalCluster`` of single-threaded
worker processes on 127.0.0.1 is started for the run and closed after it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect_dask import DaskTaskRunner

from pipeline import tracking
from pipeline.sweep import collect, driver, runner

EXIT_OK, EXIT_ERROR, EXIT_REFUSED, EXIT_TRIALS_FAILED = 0, 1, 2, 3


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
def run_chunk(trials: list, ctx: tracking.TrackingContext, options: runner.ChunkOptions) -> list[dict]:
    """Train and log one chunk of trials (seconds of work) on a Dask worker."""
    return runner.run_chunk(trials, ctx, options)


@task(name="prepare-sweep", cache_policy=NO_CACHE)
def prepare(spec: str, store_dir: str, tracking_uri: str | None, n_workers: int, train_fn: str,
            check_gradient: bool, reuse_older: bool = False, lease_wait: float = 0.0) -> driver.SweepPlan:
    """Validate, gradient-check, open the parent run, warm the Numba cache, expand and size chunks."""
    return driver.prepare(spec, store_dir, tracking_uri, n_workers, train_fn, check_gradient, reuse_older,
                          lease_wait)


@task(name="summarise-sweep", cache_policy=NO_CACHE)
def summarise(plan: driver.SweepPlan, rows: list[dict], out_dir: str | None) -> dict:
    """Leaderboard, census and plots on the parent run; best child tagged."""
    return collect.finish(plan, rows, out_dir)


def _import_heavy() -> None:
    """Run on every worker while the driver prepares: import what the first chunk would otherwise
    import on the clock (Prefect's task engine, MLflow, matplotlib, the training code)."""
    import mlflow  # noqa: F401
    import prefect.task_engine  # noqa: F401

    import pipeline.plots  # noqa: F401
    import pipeline.train  # noqa: F401


def _preload_workers(address: str) -> None:
    """Start ``_import_heavy`` on every worker in a background thread (overlaps with ``prepare``)."""
    import threading

    from distributed import Client

    def run() -> None:
        try:
            with Client(address, timeout=30, set_as_default=False) as c:
                c.run(_import_heavy)
        except Exception:  # an optimisation only: the first chunk imports them otherwise
            pass

    threading.Thread(target=run, daemon=True, name="preload-workers").start()


def _live_workers(address: str | None) -> int:
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as c:
        return len(c.nthreads())


def _drain(futures: list, chunks: list, collector: collect.Collector, address: str | None,
           worker_timeout: float, poll: float = 2.0) -> None:
    """Wait for chunk futures, feeding outcomes to ``collector``; fail if no worker is alive for
    ``worker_timeout`` seconds (Dask itself would wait forever)."""
    from distributed import Client

    if not futures:
        return
    with Client(address, timeout=30, set_as_default=False) as monitor:
        _drain_loop(futures, chunks, collector, monitor, worker_timeout, poll)


def _drain_loop(futures, chunks, collector, monitor, worker_timeout: float, poll: float) -> None:
    chunk_of = {id(f): c for f, c in zip(futures, chunks)}
    pending, gone_since = list(futures), None
    while pending:
        done, not_done = wait(pending, timeout=poll)
        not_done = list(not_done)
        for fut in done:
            try:
                # bounded: a future whose worker died can be reported done yet never deliver
                outcomes = fut.result(timeout=poll)
            except TimeoutError:
                not_done.append(fut)
            except Exception as err:  # KilledWorker after Dask's retries, or I/O after ours
                collector.mark_lost(chunk_of[id(fut)], f"chunk task failed: {type(err).__name__}: {err}")
            else:
                collector.add(outcomes)
        pending = not_done
        if pending:
            alive = len(monitor.nthreads())
            gone_since = None if alive else (gone_since or time.monotonic())
            if gone_since and time.monotonic() - gone_since > worker_timeout:
                waiting = [t for f in pending for t in chunk_of[id(f)]]
                raise RuntimeError(
                    f"every Dask worker at {monitor.scheduler.address} has been gone for {worker_timeout:.0f} s with "
                    f"{_unfinished(waiting, collector)} of {len(collector.plan.trials)} trials unfinished; restart "
                    "workers and rerun the same command: finished trials are skipped"
                )


def _unfinished(waiting: list, collector: collect.Collector) -> str:
    """How many ``waiting`` trials have no result: a chunk cut short may have logged some of its trials."""
    try:
        done = tracking.finished_keys(collector.plan.ctx)
    except Exception:  # the tracking store may be what is down: count the whole chunks
        return str(len(waiting))
    return str(sum(t.key not in done for t in waiting))


@flow(name="sweepnet-sweep")
def sweep_flow(spec: str, store_dir: str = ".sweepnet", tracking_uri: str | None = None,
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
    try:
        while plan is not None:
            t1 = time.perf_counter()
            chunks = driver.pending_chunks(plan)
            collector = collect.Collector(plan, chunks)
            futures = run_chunk.map(chunks, unmapped(plan.ctx), unmapped(plan.options)) if chunks else []
            _drain(list(futures), chunks, collector, dask_address, worker_timeout)
            rung_rows = collector.rows()
            rows += rung_rows
            timing["fanout_s"] += time.perf_counter() - t1
            timing["chunks"] += len(chunks)
            timing["trial_compute_s"] += sum(o["seconds"] for o in collector.outcomes.values())
            timing["trial_logging_s"] += sum(o.get("log_seconds", 0.0) for o in collector.outcomes.values())
            last, plan = plan, driver.next_rung(plan, rung_rows)
    except BaseException:
        tracking.close_sweep(plan.ctx, failed=True)
        driver.release_lease(plan)
        raise
    t2 = time.perf_counter()
    result = summarise(last, rows, out_dir)
    timing.update(summary_s=time.perf_counter() - t2, chunk_size=last.chunk_size, probe_trial_s=last.trial_secs)
    return {**result, "timing": timing}


def run_sweep(spec: str, store_dir: str = ".sweepnet", dask_address: str | None = None,
              n_workers: int | None = None, worker_timeout: float = 120.0, out_dir: str | None = None,
              train_fn: str = runner.TRAIN_FN, check_gradient: bool = True, reuse_older: bool = False,
              lease_wait: float = 0.0) -> dict:
    """Run ``sweep_flow`` on an existing scheduler or on an embedded LocalCluster (closed afterwards).

    ``reuse_older``: reuse trial results computed by older code (``--reuse-older``); ``lease_wait``: seconds
    to wait while another run of the same sweep holds it (0: refuse at once); see ``driver.prepare``."""
    address = dask_address or os.environ.get("SWEEPNET_DASK_ADDRESS") or None
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    kwargs = dict(spec=str(spec), store_dir=str(store_dir), tracking_uri=tracking_uri, worker_timeout=worker_timeout,
                  out_dir=out_dir, train_fn=train_fn, check_gradient=check_gradient, reuse_older=reuse_older,
                  lease_wait=lease_wait)
    if address:
        workers = n_workers or _live_workers(address)
        _preload_workers(address)
        runner_ = DaskTaskRunner(address=address)
        return sweep_flow.with_options(task_runner=runner_)(dask_address=address, n_workers=workers, **kwargs)
    from distributed import LocalCluster

    workers = n_workers or os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        _preload_workers(cluster.scheduler_address)
        runner_ = DaskTaskRunner(address=cluster.scheduler_address)
        return sweep_flow.with_options(task_runner=runner_)(
            dask_address=cluster.scheduler_address, n_workers=workers, **kwargs)


@flow(name="sweepnet-scheduled-sweep")
def scheduled_sweep(spec: str, store_dir: str = ".sweepnet", n_workers: int | None = None,
                    worker_timeout: float = 120.0) -> dict:
    """Entry point of ``sweepnet deploy`` deployments: one sweep as a subflow."""
    result = run_sweep(spec, store_dir, n_workers=n_workers, worker_timeout=worker_timeout)
    if result["trials_failed"] or result["trials_missing"]:
        print(f"sweep finished with {result['trials_failed']} failed and {result['trials_missing']} missing trials")
    return result


def _summary_json(result: dict) -> str:
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    best = result.get("best") or {}
    slim = {k: clean(v) for k, v in result.items() if k != "best"}
    slim["best"] = {k: clean(v) for k, v in best.items() if k in ("key", "run_id", "objective", "axes", "seed")}
    return json.dumps(slim, indent=2, default=str)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.sweep SPEC``; exit 0 = all trials finished, 3 = some failed, 2 = refused."""
    p = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__.splitlines()[0])
    p.add_argument("spec")
    p.add_argument("--store", default=".sweepnet")
    p.add_argument("--dask-address", default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--worker-timeout", type=float, default=120.0)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--summary-json", default=None)
    p.add_argument("--train-fn", default=runner.TRAIN_FN)
    p.add_argument("--no-gradcheck", action="store_true")
    a = p.parse_args(argv)
    try:
        result = run_sweep(a.spec, a.store, a.dask_address, a.workers, a.worker_timeout,
                           a.out_dir or str(Path(a.store) / "summaries" / Path(a.spec).stem),
                           a.train_fn, not a.no_gradcheck)
    except (driver.SweepRefused, ValueError, FileNotFoundError) as err:
        print(f"sweep refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as err:  # the sweep itself broke (e.g. every worker gone): say why, exit 1
        print(f"sweep failed: {type(err).__name__}: {err}{_service_hint(err)}", file=sys.stderr)
        return EXIT_ERROR
    if a.summary_json:
        Path(a.summary_json).write_text(_summary_json(result))
    return EXIT_TRIALS_FAILED if result["trials_failed"] or result["trials_missing"] else EXIT_OK


def _service_hint(err: BaseException) -> str:
    """Name the Prefect API when it is what went away (httpx errors say only 'connection refused')."""
    if type(err).__module__.split(".")[0] in ("httpx", "httpcore"):
        api = os.environ.get("PREFECT_API_URL", "the temporary Prefect server")
        return (f" (the Prefect API at {api} stopped answering; bring it back and rerun the same command: "
                "finished trials are skipped)")
    return ""


if __name__ == "__main__":
    sys.exit(main())
