"""Dask cluster plumbing for the sweep flow: where chunks run and how the driver waits for them.

``task_runner`` yields a ``DaskTaskRunner`` on an existing scheduler or on an embedded ``LocalCluster`` of
single-threaded worker processes on 127.0.0.1 (closed afterwards); ``preload_workers`` imports the heavy
modules on every worker while the driver prepares; ``drain`` feeds finished chunks to a collector and fails
within a bounded time when every worker is gone (Dask itself would wait forever) or at once, with a message that
names it, when the scheduler stops answering (its futures would otherwise come back cancelled, and their trials
be counted as failed).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect.futures import wait
from prefect_dask import DaskTaskRunner

from pipeline import tracking
from pipeline.sweep import collect


@dataclass(frozen=True)
class Cluster:
    """The task runner of one sweep and the scheduler it talks to."""

    task_runner: DaskTaskRunner
    address: str
    n_workers: int


def _import_heavy() -> None:
    """Run on every worker while the driver prepares: import what the first chunk would otherwise
    import on the clock (Prefect's task engine, MLflow, matplotlib, the training code)."""
    import mlflow  # noqa: F401
    import prefect.task_engine  # noqa: F401

    import pipeline.plots  # noqa: F401
    import pipeline.train  # noqa: F401


def preload_workers(address: str) -> None:
    """Start ``_import_heavy`` on every worker in a background thread (overlaps with ``prepare``)."""
    from distributed import Client

    def run() -> None:
        try:
            with Client(address, timeout=30, set_as_default=False) as c:
                c.run(_import_heavy)
        except Exception:  # an optimisation only: the first chunk imports them otherwise
            pass

    threading.Thread(target=run, daemon=True, name="preload-workers").start()


def live_workers(address: str) -> int:
    """How many worker threads the scheduler at ``address`` has now."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as c:
        return len(c.nthreads())


@contextmanager
def task_runner(address: str | None = None, n_workers: int | None = None) -> Iterator[Cluster]:
    """A ``DaskTaskRunner`` on ``address`` (or ``SWEEPNET_DASK_ADDRESS``), else on an embedded LocalCluster.

    The embedded cluster has ``n_workers`` (default: one per core) single-threaded worker processes on
    127.0.0.1 and is closed on exit; an existing scheduler is left running. Workers start importing the
    heavy modules at once (``preload_workers``).
    """
    address = address or os.environ.get("SWEEPNET_DASK_ADDRESS") or None
    if address:
        workers = n_workers or live_workers(address)
        preload_workers(address)
        yield Cluster(DaskTaskRunner(address=address), address, workers)
        return
    from distributed import LocalCluster

    workers = n_workers or os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        preload_workers(cluster.scheduler_address)
        yield Cluster(DaskTaskRunner(address=cluster.scheduler_address), cluster.scheduler_address, workers)


def worker_memory_limit() -> int | None:
    """The memory limit in bytes of the Dask worker running this code (None outside a worker, or unlimited)."""
    try:
        from distributed import get_worker

        return int(get_worker().memory_manager.memory_limit or 0) or None
    except (ValueError, AttributeError):  # not on a worker
        return None


def drain(futures: list, chunks: list, collector: collect.Collector, address: str | None,
          worker_timeout: float, poll: float = 2.0, refill=None) -> None:
    """Wait for chunk futures, feeding outcomes to ``collector``; fail if no worker is alive for
    ``worker_timeout`` seconds (Dask itself would wait forever).

    ``refill`` (adaptive sweeps): called after each finished chunk, returns ``(future, chunk)`` pairs it
    submitted (the chunks a ``pipeline.sweep.feed.Feed`` queued in response); they are waited for too."""
    from distributed import Client

    if not futures:
        return
    with Client(address, timeout=30, set_as_default=False) as monitor:
        try:
            _drain_loop(futures, chunks, collector, monitor, worker_timeout, poll, refill)
        except SchedulerLost:
            raise
        except (Exception, asyncio.CancelledError) as err:
            _raise_if_scheduler_gone(monitor, collector, err)
            raise


def _drain_loop(futures, chunks, collector, monitor, worker_timeout: float, poll: float, refill=None) -> None:
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
            except (Exception, asyncio.CancelledError) as err:  # KilledWorker after Dask's retries, I/O after ours
                _raise_if_scheduler_gone(monitor, collector, err)
                collector.mark_lost(chunk_of[id(fut)], f"chunk task failed: {type(err).__name__}: {err}")
            else:
                collector.add(outcomes)
            for new_fut, new_chunk in (refill() if refill else []):
                chunk_of[id(new_fut)] = new_chunk
                not_done.append(new_fut)
        pending = not_done
        if pending:
            alive = len(monitor.nthreads())
            gone_since = None if alive else (gone_since or time.monotonic())
            if gone_since and time.monotonic() - gone_since > worker_timeout:
                waiting = _without_result(collector)
                raise RuntimeError(
                    f"every Dask worker at {monitor.scheduler.address} has been gone for {worker_timeout:.0f} s with "
                    f"{_unfinished(waiting, collector)} of {len(collector.plan.trials)} trials unfinished; restart "
                    "workers and rerun the same command: finished trials are skipped"
                )


class SchedulerLost(RuntimeError):
    """The sweep's Dask scheduler stopped answering while chunks were out."""


def _scheduler_answers(address: str, timeout: float = 5.0) -> bool:
    """True when something accepts TCP connections at the scheduler's address (TLS or not)."""
    from distributed.comm.addressing import get_address_host_port

    try:
        with socket.create_connection(get_address_host_port(address), timeout=timeout):
            return True
    except OSError:
        return False


def _raise_if_scheduler_gone(monitor, collector: collect.Collector, err: BaseException) -> None:
    """A chunk future failed or the monitor's call did: if the scheduler is gone, say so and stop the sweep,
    instead of counting the trials it held as failed."""
    address = monitor.scheduler.address
    if _scheduler_answers(address):
        return
    waiting = _without_result(collector)
    cause = (str(err).strip().splitlines() or [""])[0]
    raise SchedulerLost(
        f"the Dask scheduler at {address} stopped answering with {_unfinished(waiting, collector)} of "
        f"{len(collector.plan.trials)} trials unfinished; restart the scheduler and its workers and rerun the same "
        f"command: finished trials are skipped (seen as {type(err).__name__}: {cause})"
    ) from err


def _without_result(collector: collect.Collector) -> list:
    """The rung's trials no chunk has reported: those out on workers and those not yet submitted."""
    return [t for t in collector.plan.trials if t.key not in collector.outcomes]


def _unfinished(waiting: list, collector: collect.Collector) -> str:
    """How many ``waiting`` trials have no result: a chunk cut short may have logged some of its trials."""
    try:
        done = tracking.finished_keys(collector.plan.ctx)
    except Exception:  # the tracking store may be what is down: count the whole chunks
        return str(len(waiting))
    return str(sum(t.key not in done for t in waiting))
