"""Run sweep files in this process: one Prefect API for all of them, the flow per file, the summary printed.

``sweepnet sweep`` and ``sweepnet demo`` land here. Prefect reads its settings when it is first imported,
so the API URL and log levels go into ``os.environ`` before ``flows`` is imported; the Dask workers the
flow spawns inherit them, so every task talks to the same server.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_REFUSED, EXIT_TRIALS_FAILED = 0, 1, 2, 3

_QUIET = {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_ROOT_LEVEL": "WARNING",
          "DASK_LOGGING__DISTRIBUTED": "warning", "MLFLOW_LOGGING_LEVEL": "WARNING"}


@contextmanager
def prefect_api(store: Path, verbose: bool = False, keep: bool | None = None) -> Iterator[str | None]:
    """``PREFECT_API_URL`` if set, else a local Prefect server (see :func:`local_services`)."""
    with local_services(store, verbose, keep) as info:
        yield info["api_url"]


@contextmanager
def local_services(store: Path, verbose: bool = False, keep: bool | None = None,
                   dask_workers: int | None = None) -> Iterator[dict]:
    """The Prefect API (and, kept, a Dask scheduler) of one command: ``api_url``, ``dask_address``, ``timing``.

    ``PREFECT_API_URL`` if set. Else, by default (``keep``: ``--[no-]keep-services``, else
    ``SWEEPNET_KEEP_SERVICES``), a Prefect server and ``dask_workers`` Dask workers kept running under
    ``STORE/services`` between commands and stopped by an idle watch (``app.services.keep``); with keeping
    off, a Prefect server for this command only, stopped by PID on exit.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        for key, value in _QUIET.items():
            os.environ.setdefault(key, value)
    timing: dict = {"start_s": 0.0, "stop_s": 0.0, "reused": [], "kept": False}
    if os.environ.get("PREFECT_API_URL"):
        yield {"api_url": os.environ["PREFECT_API_URL"], "dask_address": None, "timing": timing}
        return
    from app.services import keep_enabled

    t0 = time.perf_counter()
    if keep_enabled(keep):
        cm, state = _kept(store, dask_workers), (store / "services").resolve()
    else:
        cm, state = _per_command(store), (store / "prefect-for-sweeps").resolve()
    with cm as info:
        timing.update(start_s=round(time.perf_counter() - t0, 2), reused=info.get("reused", []),
                      kept=bool(info.get("kept")))
        os.environ.update(PREFECT_API_URL=info["api_url"], PREFECT_HOME=str(state / "prefect"))
        if info.get("auth_string"):
            os.environ["PREFECT_API_AUTH_STRING"] = info["auth_string"]
        try:
            yield {**info, "timing": timing}
        finally:
            _flush_prefect()  # logs and events still queued for the server go out before it stops (or we exit)
            t1 = time.perf_counter()
    timing["stop_s"] = round(time.perf_counter() - t1, 2)
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_AUTH_STRING"):
        os.environ.pop(key, None)


@contextmanager
def _kept(store: Path, dask_workers: int | None) -> Iterator[dict]:
    from app.services import idle_seconds, kept_services, prefect_auth_string

    state = (store / "services").resolve()
    with kept_services(state, dask_workers=dask_workers) as info:
        what = ", ".join(f"{n} started in {s:.1f} s" for n, s in info["started"].items())
        what = "; ".join(filter(None, [what, ", ".join(f"{n} reused" for n in info["reused"])]))
        print(f"local services in {state}: {what} (kept; stopped after {idle_seconds():.0f} s unused, or by "
              f"`sweepnet services down --state-dir {state}`)", file=sys.stderr, flush=True)
        if info.get("auth"):
            info["auth_string"] = prefect_auth_string(state)
        yield {**info, "kept": True}


@contextmanager
def _per_command(store: Path) -> Iterator[dict]:
    from app.services import save_prefect_template, seed_prefect_db, start_prefect, stop_services

    state = (store / "prefect-for-sweeps").resolve()
    print(f"starting a local Prefect server (state in {state}) ...", file=sys.stderr, flush=True)
    seed_prefect_db(state)
    info = start_prefect(state, worker=False, ui=False)
    save_prefect_template(state)
    try:
        yield {"api_url": info["api_url"], "dask_address": None, "started": {"prefect": info["startup_s"]}}
    finally:
        stop_services(state, only=["prefect"])


def _flush_prefect() -> None:
    if "prefect" not in sys.modules:
        return
    from prefect._internal.concurrency.services import QueueService

    try:
        QueueService.drain_all(timeout=10)
    except Exception:  # best effort: the sweep's results are already in MLflow
        pass


def run_one(spec: str, store: Path, **options) -> tuple[int, dict | None]:
    """One sweep file through ``flows.run_sweep``: (exit code, summary or None); errors printed."""
    from flows import run_sweep
    from pipeline.sweep import driver

    out_dir = str(store / "summaries" / Path(spec).stem)
    try:
        result = run_sweep(spec, str(store), out_dir=out_dir, **options)
    except driver.SweepRefused as err:  # only ``prepare``, before any fan-out, refuses
        print(f"sweep refused: {err}", file=sys.stderr)
        return EXIT_REFUSED, None
    except Exception as err:  # the sweep itself broke (e.g. every worker gone, the summary): say why, exit 1
        print(f"sweep failed: {type(err).__name__}: {err}{_service_hint(err)}", file=sys.stderr)
        return EXIT_ERROR, None
    failed = result["trials_failed"] or result["trials_missing"] or not result["trials_finished"]
    return (EXIT_TRIALS_FAILED if failed else EXIT_OK), result


def run_specs(specs: list[str], store: Path, *, dask_address: str | None = None, n_workers: int | None = None,
              worker_timeout: float = 120.0, check_gradient: bool = True, top: int = 10, verbose: bool = False,
              summary_json: str | None = None, train_fn: str | None = None, reuse_older: bool = False,
              lease_wait: float = 0.0, keep_services: bool | None = None) -> int:
    """Run each sweep file in turn and print its summary; the exit code is the worst of them."""
    from pipeline import tracking

    # before the URI becomes a Prefect flow parameter or a LocalCluster inherits it: no user:password@ in it
    tracking.credentials_to_env()
    store.mkdir(parents=True, exist_ok=True)
    options = dict(dask_address=dask_address, n_workers=n_workers, worker_timeout=worker_timeout,
                   check_gradient=check_gradient, reuse_older=reuse_older, lease_wait=lease_wait)
    if train_fn:
        options["train_fn"] = train_fn
    own_dask = not (dask_address or os.environ.get("SWEEPNET_DASK_ADDRESS"))
    worst, links, last = EXIT_OK, [], None
    with local_services(store, verbose, keep_services, (n_workers or os.cpu_count() or 1) if own_dask else None) as svc:
        if svc.get("dask_address"):  # kept workers: no LocalCluster to start and stop per sweep
            options.update(dask_address=svc["dask_address"], n_workers=n_workers or os.cpu_count() or 1)
        for spec in specs:
            code, result = run_one(spec, store, **options)
            if result is not None:
                print_summary(result, top)
                links.append(result)
                last = result
            worst = max(worst, code)
    if summary_json and last is not None:  # with the services' start and stop seconds (``timing.services``)
        last.setdefault("timing", {})["services"] = svc["timing"]
        Path(summary_json).write_text(summary_to_json(last))
    print(open_ui_lines(store, links))
    return worst


def open_ui_lines(store: Path, results: list[dict]) -> str:
    """The closing lines: how to open the MLflow UI, then each sweep's experiment in its training view."""
    from pipeline.ui_links import DEFAULT_UI

    urls = [f"  {r['experiment_url']}" for r in results if r.get("experiment_url")]
    if not urls:
        return f"\nOpen the MLflow UI:  sweepnet ui --store {store}   (then {DEFAULT_UI})"
    served = any(r.get("tracking_uri", "").startswith(("http://", "https://")) for r in results)
    head = "Open the MLflow UI:" if served else f"Open the MLflow UI:  sweepnet ui --store {store}   then"
    return "\n".join(["", head, *urls])


def summary_to_json(result: dict) -> str:
    """The sweep's counts, timing and best trial as JSON (non-finite floats as null)."""
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    best = result.get("best") or {}
    slim = {k: clean(v) for k, v in result.items() if k not in ("best", "tables")}
    slim["best"] = {k: clean(v) for k, v in best.items() if k in ("key", "run_id", "objective", "axes", "seed")}
    return json.dumps(slim, indent=2, default=str)


def _service_hint(err: BaseException) -> str:
    """Name the Prefect API when it is what went away (httpx errors say only 'connection refused')."""
    if type(err).__module__.split(".")[0] in ("httpx", "httpcore"):
        api = os.environ.get("PREFECT_API_URL", "the temporary Prefect server")
        return (f" (the Prefect API at {api} stopped answering; bring it back and rerun the same command: "
                "finished trials are skipped)")
    return ""


def print_summary(summary: dict, top: int) -> None:
    """Leaderboard head, census (when seeds were swept) and the counts."""
    folder = Path(summary["summary_dir"])
    rows = list(csv.DictReader(open(folder / "leaderboard.csv")))
    if rows:
        metric_cols = list(rows[0])[list(rows[0]).index("rung") + 1: list(rows[0]).index("status")]
        hide = {"run_id", "key", *metric_cols[3:]}  # objective + two more metrics; the rest is in the CSV
        print("\n" + _table(rows[:top], hide, keep={"rank", "status", *metric_cols[:1]}))
    census = list(csv.DictReader(open(folder / "census.csv"))) if (folder / "census.csv").exists() else []
    if census and any(r.get("seed") for r in rows):
        print("\ninitialisation census (share of seeds reaching the best objective / solved; spread over seeds):")
        print(_table(census, set(), keep={"n_seeds", "n_failed", "share_best", "share_solved", "median"}))
    print(f"\n{summary['trials']} trials: {summary['trials_finished']} finished, {summary['trials_failed']} failed, "
          f"{summary.get('trials_skipped', 0)} skipped, {summary.get('trials_missing', 0)} missing. "
          f"Tables and plots: {folder}")
    for note in ("selection_note", "failure_note"):
        if summary.get(note):
            print(summary[note])
    if summary.get("reuse_note"):
        print(summary["reuse_note"])
    if summary.get("parent_url"):
        print(f"MLflow parent run (leaderboard and census tables, children): {summary['parent_url']}")
    if summary.get("champion"):
        print(f"best model: {summary['champion']} (`sweepnet predict {summary['champion']} ROWS.csv`, "
              f"`sweepnet serve {summary['champion']}`)")


def _table(rows: list[dict], hide: set[str], keep: set[str]) -> str:
    """Markdown of ``rows`` without hidden columns and without columns that never vary."""
    cols = [c for c in rows[0] if c not in hide and (c in keep or len({r[c] for r in rows}) > 1)]
    return _md([cols] + [[r[c] for c in cols] for r in rows])


def _md(table: list[list[str]]) -> str:
    head, body = table[0], table[1:]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
