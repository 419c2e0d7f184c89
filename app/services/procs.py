"""Process bookkeeping for :mod:`app.services`: spawn, record, probe and stop by PID.

Every process is started in its own session (``start_new_session=True``) so that its PID is
also its process-group id: stopping sends SIGTERM to that group (the server and every helper
process it forked, e.g. Dask nannies or uvicorn workers), then SIGKILL after a timeout.
A process is identified by PID *and* creation time, so a PID reused by an unrelated process
after a reboot or a crash is never signalled.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

STATE_FILE = "services.json"
STATE_LOCK = threading.Lock()


class ServiceError(RuntimeError):
    """A local service failed to start, answer or stop."""


@dataclass(frozen=True)
class ProcRecord:
    """One process started by us.

    Attributes
    ----------
    name : str
        Unique name within the state directory, e.g. ``dask-worker-0``.
    service : str
        The service group it belongs to: ``dask``, ``mlflow``, ``prefect`` or ``postgres``.
    pid : int
        Process id, which is also its process-group id.
    create_time : float
        ``psutil`` creation time, used to reject reused PIDs.
    cmd : list of str
        The command line it was started with.
    log : str
        Path of the file that receives its stdout and stderr.
    """

    name: str
    service: str
    pid: int
    create_time: float
    cmd: list[str]
    log: str


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def read_state(state_dir: Path) -> dict:
    """Read ``services.json`` from ``state_dir``; an empty state when there is none."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return {"processes": {}, "services": {}}
    return json.loads(path.read_text())


def write_state(state_dir: Path, state: dict) -> None:
    """Write the state atomically (write to a temporary file, then rename); readable by its owner only."""
    path = Path(state_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)


def private_dir(path: Path) -> Path:
    """``path`` created if missing, mode 0700: service data, logs and PIDs are the operator's alone."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def spawn(
    state_dir: Path,
    name: str,
    service: str,
    cmd: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
    run_as: Mapping | None = None,
) -> ProcRecord:
    """Start ``cmd`` detached in its own process group, logging to ``logs/<name>.log``.

    The PID goes to ``pids/<name>.pid``; the caller records the returned record in the state.
    ``run_as`` holds ``subprocess`` ``user``/``group``/``extra_groups`` (root starting PostgreSQL).
    """
    state_dir = Path(state_dir)
    private_dir(state_dir / "logs")
    private_dir(state_dir / "pids")
    log_path = state_dir / "logs" / f"{name}.log"
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd or state_dir),
            start_new_session=True,
            **dict(run_as or {}),
        )
    # The Popen object is dropped on purpose: services outlive the `up` command.
    proc.returncode = 0  # silences the "still running" ResourceWarning of Popen.__del__
    (state_dir / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
    return ProcRecord(name, service, proc.pid, _create_time(proc.pid), list(cmd), str(log_path))


def record_dict(rec: ProcRecord) -> dict:
    """The JSON form of a record."""
    return asdict(rec)


def record_from(data: Mapping) -> ProcRecord:
    """Inverse of :func:`record_dict`."""
    return ProcRecord(**data)


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _reap(pid: int) -> None:
    # Collect the exit status when the process is our own child (pytest session, `up` itself).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def _process(rec: ProcRecord) -> psutil.Process | None:
    """The live process behind ``rec``, or None (gone, zombie or PID reused)."""
    _reap(rec.pid)
    try:
        proc = psutil.Process(rec.pid)
        if abs(proc.create_time() - rec.create_time) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def is_alive(rec: ProcRecord) -> bool:
    """True when the recorded process still runs (same PID and same creation time)."""
    return _process(rec) is not None


def stop(rec: ProcRecord, timeout: float = 10.0, first_signal: int = signal.SIGTERM) -> bool:
    """SIGTERM (or ``first_signal``) the record's process group, SIGKILL what is left after ``timeout`` seconds.

    Returns True when something was running. PostgreSQL gets SIGINT, its "fast" shutdown: SIGTERM waits for
    every client to disconnect. Descendants that left the group are signalled
    individually, so nothing the service forked is left behind.
    """
    proc = _process(rec)
    if proc is None:
        return False
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        family = [proc]
    _signal_group(rec.pid, first_signal)
    _, alive = psutil.wait_procs(family, timeout=timeout, callback=lambda p: _reap(p.pid))
    if alive:
        _signal_group(rec.pid, signal.SIGKILL)
        for leftover in alive:
            try:
                leftover.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5.0, callback=lambda p: _reap(p.pid))
    _reap(rec.pid)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # the group is gone and the id now belongs to someone else
        pass


def log_tail(rec: ProcRecord, n_lines: int = 25) -> str:
    """The last ``n_lines`` of the record's log, for error messages."""
    try:
        lines = Path(rec.log).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n_lines:])


def wait_until(
    check: Callable[[], bool],
    records: Sequence[ProcRecord],
    what: str,
    timeout: float,
    interval: float = 0.25,
) -> None:
    """Poll ``check()`` until it is true; fail fast when one of ``records`` exits.

    Raises
    ------
    ServiceError
        On timeout or when a watched process died; the message carries its log tail.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        for rec in records:
            if not is_alive(rec):
                raise ServiceError(
                    f"{rec.name} (pid {rec.pid}) exited while waiting for {what}. "
                    f"Log {rec.log} ends with:\n{log_tail(rec)}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {r.name}: {r.log}\n{log_tail(r, 10)}" for r in records)
            raise ServiceError(
                f"timed out after {timeout:.0f} s waiting for {what}; raise the timeout on a "
                f"loaded machine. Recent log lines:\n{tails}"
            )
        time.sleep(interval)


def _request(url: str, body: Mapping | None, auth: tuple[str, str] | None,
             method: str | None) -> urllib.request.Request:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("GET" if body is None else "POST"))
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    return req


def http_status(
    url: str,
    *,
    body: Mapping | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 5.0,
    method: str | None = None,
) -> int | None:
    """HTTP status code of a GET (or a JSON POST when ``body`` is given); None if unreachable."""
    try:
        with urllib.request.urlopen(_request(url, body, auth, method), timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def http_json(url: str, body: Mapping | None = None, timeout: float = 5.0,
              auth: tuple[str, str] | None = None):
    """GET (or POST ``body``) and decode the JSON answer; raises on HTTP errors."""
    req = _request(url, body, auth, None)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def record_service(state_dir: Path, recs: Iterable[ProcRecord], service: str, info: dict) -> None:
    """Record ``recs`` and the ``service``'s info in the state file (thread-safe within a process)."""
    with STATE_LOCK:
        state = read_state(state_dir)
        for rec in recs:
            state["processes"][rec.name] = record_dict(rec)
        state["services"][service] = info
        write_state(state_dir, state)
