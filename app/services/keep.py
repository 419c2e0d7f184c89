"""Local services kept between sweeps: a Prefect server (and Dask workers) reused, stopped when idle.

``sweepnet sweep`` without ``PREFECT_API_URL`` used to start a Prefect server for each command (~14 s) and a
LocalCluster (~5 s), then stop both. :func:`kept_services` instead starts them on first use under the
store's state directory (``STORE/services``, the directory ``sweepnet services status|down`` reads by
default), records them like ``services up`` does, and leaves them running for the next sweep. A detached
idle watch (``python -m app.services.keep STATE_DIR``, recorded as the ``watch`` service) stops by PID what
a sweep started once no sweep has used it for ``idle_s`` seconds. Services started by ``services up`` are
reused but never stopped by the watch.

Each sweep holds an in-use mark (``in-use/PID-CTIME``) while it runs; the watch never stops services while a
live process holds one. One lock file serialises the start, the reuse and the idle stop.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil

from app.services import procs
from app.services.procs import free_port
from app.services.starters import LOOPBACK, start_dask, start_prefect

KEEP_ENV = "SWEEPNET_KEEP_SERVICES"
IDLE_ENV = "SWEEPNET_SERVICES_IDLE_S"
DEFAULT_IDLE_S = 600.0
WATCH = "watch"
#: what the kept Dask workers inherit that changes how a trial runs or where it logs: a change restarts them
_WORKER_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "PREFECT_API_URL", "PYTHONPATH",
               "SWEEPNET_DATA_DIR", "NUMBA_CACHE_DIR")
_CODE_DIRS = ("kernels", "pipeline", "flows")


def keep_enabled(flag: bool | None = None) -> bool:
    """``flag`` when given (``--keep-services``/``--no-keep-services``), else ``SWEEPNET_KEEP_SERVICES``
    (on unless ``0``, ``false``, ``no`` or ``off``)."""
    if flag is not None:
        return flag
    return os.environ.get(KEEP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def idle_seconds() -> float:
    """The idle timeout: ``SWEEPNET_SERVICES_IDLE_S`` (seconds) or :data:`DEFAULT_IDLE_S`."""
    raw = os.environ.get(IDLE_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_IDLE_S
    except ValueError:
        raise ValueError(f"{IDLE_ENV}={raw!r} is not a number of seconds; set e.g. {IDLE_ENV}=600") from None
    if value <= 0:
        raise ValueError(f"{IDLE_ENV}={raw!r} must be > 0 seconds; use --no-keep-services to keep nothing")
    return value


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    procs.private_dir(state_dir)
    with open(state_dir / "keep.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def code_fingerprint() -> str:
    """Path, size and mtime of every ``.py`` the workers import from the project: an edit restarts them."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(sys.executable.encode())
    for name in _CODE_DIRS:
        for path in sorted((root / name).rglob("*.py")):
            st = path.stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _worker_fingerprint(n_workers: int, api_url: str) -> str:
    env = {k: os.environ.get(k) for k in _WORKER_ENV}
    env["PREFECT_API_URL"] = api_url
    text = json.dumps([n_workers, env, code_fingerprint()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alive(state_dir: Path, service: str) -> dict | None:
    """The info of ``service`` when every recorded process of it is alive and its start-up completed."""
    state = procs.read_state(state_dir)
    info = state["services"].get(service)
    recs = [procs.record_from(r) for r in state["processes"].values() if r["service"] == service]
    if info and recs and not info.get("starting") and all(procs.is_alive(r) for r in recs):
        return info
    return None


def _mark(state_dir: Path, service: str, **extra) -> None:
    info = {**procs.read_state(state_dir)["services"][service], "kept": True, **extra}
    procs.record_service(state_dir, [], service, info)


def _start(state_dir: Path, want_prefect: bool, want_dask: bool, n_workers: int, api_url: str | None,
           timeout: float) -> dict[str, float]:
    """Start what is missing, Prefect and Dask at once (the workers learn the API's port before it answers)."""
    from app.services.supervisor import stop_services

    port = free_port(LOOPBACK)
    api = api_url or f"http://{LOOPBACK}:{port}/api"
    jobs = {}
    if want_prefect:
        seeded = seed_prefect_db(state_dir)
        jobs["prefect"] = lambda: start_prefect(state_dir, port=port, worker=False, ui=False, timeout=timeout)
    if want_dask:
        env = {"PREFECT_API_URL": api, "PREFECT_HOME": str((state_dir / "prefect").resolve())}
        jobs["dask"] = lambda: start_dask(state_dir, n_workers=n_workers, dashboard=False, env=env, timeout=timeout)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
    errors = [f"{n}: {f.exception()}" for n, f in futures.items() if f.exception()]
    if errors:
        stop_services(state_dir, only=list(jobs))
        raise procs.ServiceError("could not start local services, stopped them again:\n" + "\n".join(errors))
    if want_prefect:
        _mark(state_dir, "prefect", seeded_db=seeded)
        save_prefect_template(state_dir)
    if want_dask:
        _mark(state_dir, "dask", fingerprint=_worker_fingerprint(n_workers, api))
    return {name: round(time.monotonic() - t0, 2) for name in jobs}


def _prefect_template() -> Path:
    """Where a migrated, empty Prefect database of the installed Prefect version is kept (beside the MLflow one)."""
    import importlib.metadata

    from pipeline.store_seed import cache_dir

    return cache_dir() / f"prefect-{importlib.metadata.version('prefect')}-empty.db"


def seed_prefect_db(state_dir: Path) -> bool:
    """A new local Prefect server's sqlite database as a copy of the migrated template (its schema migrations
    are a third of a cold start here). True when seeded; never touches an existing database."""
    db, template = Path(state_dir) / "prefect" / "prefect.db", _prefect_template()
    if db.exists() or not template.exists():
        return False
    procs.private_dir(db.parent)
    shutil.copyfile(template, db)
    return True


def save_prefect_template(state_dir: Path) -> None:
    """After a fresh server answered (migrated, no flow run yet): a consistent copy of its database as the
    template, through sqlite's backup API (the server keeps writing); best effort."""
    template = _prefect_template()
    db = Path(state_dir) / "prefect" / "prefect.db"
    if template.exists() or not db.exists():
        return
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        tmp = template.with_name(f".{template.name}.{os.getpid()}")
        src, dst = sqlite3.connect(db, timeout=30), sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            src.close(), dst.close()
        os.replace(tmp, template)
    except (OSError, sqlite3.Error):
        pass


def _ensure_watch(state_dir: Path, idle_s: float) -> None:
    """Spawn the idle watch unless one runs (its own process group: it outlives the sweep)."""
    info = _alive(state_dir, WATCH)
    if info and info.get("idle_s") == idle_s:
        return
    if info:
        from app.services.supervisor import stop_services

        stop_services(state_dir, only=[WATCH])
    cmd = [sys.executable, "-m", "app.services.keep", str(state_dir), "--idle", str(idle_s)]
    rec = procs.spawn(state_dir, "sweepnet-idle-watch", WATCH, cmd, dict(os.environ), state_dir)
    procs.record_service(state_dir, [rec], WATCH, {"idle_s": idle_s})


@contextmanager
def kept_services(state_dir: Path, *, dask_workers: int | None = None, idle_s: float | None = None,
                  timeout: float = 180.0) -> Iterator[dict]:
    """A Prefect API (and, with ``dask_workers``, a Dask scheduler with that many workers) for one command.

    Reuses what ``state_dir`` records as running (Dask only if started for sweeps with the same workers,
    environment and code), starts the rest, and leaves everything running: the idle watch stops it
    ``idle_s`` seconds after the last command that used it ended. Yields ``api_url``, ``dask_address``
    (None without ``dask_workers``), ``started`` (service -> start-up seconds) and ``reused`` (names).
    """
    from app.services.supervisor import stop_services

    state_dir = Path(state_dir).resolve()
    idle_s = idle_s or idle_seconds()
    with _locked(state_dir):
        mark = _hold(state_dir)
        try:
            prefect = _alive(state_dir, "prefect")
            api = prefect["api_url"] if prefect else None
            want_dask, dask = bool(dask_workers), _alive(state_dir, "dask") if dask_workers else None
            if dask and not dask.get("kept"):  # `services up`'s workers log where it says: the sweep uses its own
                want_dask, dask = False, None
            elif dask and dask.get("fingerprint") != _worker_fingerprint(dask_workers, api):
                stop_services(state_dir, only=["dask"])  # other code, worker count or environment: restart
                dask = None
            started = _start(state_dir, not prefect, want_dask and not dask, dask_workers or 0, api, timeout)
            _ensure_watch(state_dir, idle_s)
            prefect = _alive(state_dir, "prefect")
            info = {"api_url": prefect["api_url"], "auth": bool(prefect.get("auth")),
                    "dask_address": (_alive(state_dir, "dask") or {}).get("address") if want_dask else None,
                    "started": started,
                    "reused": [n for n in ("prefect", "dask")[:1 + want_dask] if n not in started]}
        except BaseException:
            mark.unlink(missing_ok=True)
            raise
    try:
        yield info
    finally:
        mark.unlink(missing_ok=True)
        (state_dir / "last-used").touch()


def _hold(state_dir: Path) -> Path:
    """This process's in-use mark: the watch leaves the services alone while it exists and we live."""
    folder = procs.private_dir(state_dir / "in-use")
    mark = folder / f"{os.getpid()}-{psutil.Process().create_time():.2f}"
    mark.touch()
    (state_dir / "last-used").touch()
    return mark


def busy(state_dir: Path) -> bool:
    """True while a live process holds an in-use mark (marks of dead processes are removed)."""
    held = False
    for mark in (Path(state_dir) / "in-use").glob("*-*"):
        pid, _, ctime = mark.name.partition("-")
        try:
            alive = abs(psutil.Process(int(pid)).create_time() - float(ctime)) < 1.0
        except (psutil.Error, ValueError):
            alive = False
        if alive:
            held = True
        else:
            mark.unlink(missing_ok=True)
    return held


def watch_once(state_dir: Path, idle_s: float) -> bool:
    """One look: stop the kept services when idle for ``idle_s`` seconds. True when the watch is done
    (it stopped them, or nothing kept runs any more, e.g. after ``sweepnet services down``)."""
    from app.services.supervisor import stop_services

    with _locked(state_dir):
        kept = [s for s in ("prefect", "dask") if (_alive(state_dir, s) or {}).get("kept")]
        if not kept:
            return True
        if busy(state_dir):
            return False
        last = state_dir / "last-used"
        if last.exists() and time.time() - last.stat().st_mtime < idle_s:
            return False
        stop_services(state_dir, only=kept)
        return True


def kept_note(state_dir: Path | str) -> str:
    """One line for ``services status``: what the idle watch stops, and when at the earliest."""
    state_dir = Path(state_dir)
    kept = [s for s in ("prefect", "dask") if (_alive(state_dir, s) or {}).get("kept")]
    idle = float((procs.read_state(state_dir)["services"].get(WATCH) or {}).get("idle_s") or DEFAULT_IDLE_S)
    if busy(state_dir):
        return f"{', '.join(kept) or 'nothing'} in use by a sweep; stopped {idle:.0f} s after the last one ends"
    last = state_dir / "last-used"
    unused = time.time() - last.stat().st_mtime if last.exists() else 0.0
    return (f"{', '.join(kept) or 'nothing'} unused for {unused:.0f} s, stopped at {idle:.0f} s "
            f"(or now: sweepnet services down --state-dir {state_dir})")


def _forget_watch(state_dir: Path) -> None:
    with procs.STATE_LOCK:
        state = procs.read_state(state_dir)
        state["processes"] = {k: v for k, v in state["processes"].items() if v["service"] != WATCH}
        state["services"].pop(WATCH, None)
        procs.write_state(state_dir, state)
    (state_dir / "pids" / "sweepnet-idle-watch.pid").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """The idle watch: look every ``--poll`` seconds, stop the kept services once idle, then exit."""
    parser = argparse.ArgumentParser(prog="python -m app.services.keep", description=main.__doc__)
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--idle", type=float, default=DEFAULT_IDLE_S, help="seconds unused before stopping")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    while not watch_once(state_dir, args.idle):
        time.sleep(args.poll)
    with _locked(state_dir):
        _forget_watch(state_dir)
    print(f"{time.strftime('%H:%M:%S')} kept services stopped or gone; watch exits", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
