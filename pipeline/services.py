"""Real local services on loopback: Dask scheduler + workers, MLflow server, Prefect server + worker.

``start_services`` starts the requested services as detached processes under a state
directory (default ``.sweepnet/services/``): PID files in ``pids/``, logs in ``logs/``, data
(MLflow SQLite + artifacts, Prefect home) in per-service folders, and ``services.json`` with
what was started. It returns only once each service answers a real request, not merely a
health probe. ``stop_services`` stops what that state directory records, by PID.

Everything binds 127.0.0.1 unless ``host`` says otherwise, which is an explicit choice.

Examples
--------
>>> svc = start_services(["dask", "mlflow"], dask_workers=2)   # doctest: +SKIP
>>> svc.env()                                                  # doctest: +SKIP
{'SWEEPNET_DASK_ADDRESS': 'tcp://127.0.0.1:40123', 'MLFLOW_TRACKING_URI': 'http://127.0.0.1:...'}
>>> stop_services()                                            # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import _service_procs as procs
from pipeline._service_procs import ServiceError, free_port, http_status

__all__ = [
    "DEFAULT_STATE_DIR",
    "SERVICES",
    "ServiceError",
    "ServiceSet",
    "load_service_set",
    "service_status",
    "start_services",
    "stop_services",
]

DEFAULT_STATE_DIR = Path(".sweepnet") / "services"
SERVICES = ("dask", "mlflow", "prefect")
LOOPBACK = "127.0.0.1"
DEFAULT_POOL = "sweepnet-process"
_STOP_ORDER = ("prefect-worker", "prefect-server", "mlflow-server", "dask-worker", "dask-scheduler")
_lock = threading.Lock()


@dataclass(frozen=True)
class ServiceSet:
    """Where the running services answer (None for a service that is not running).

    Attributes
    ----------
    state_dir : Path
        The state directory that records the processes.
    dask_address : str or None
        ``tcp://127.0.0.1:PORT``, for ``distributed.Client`` or ``--dask-address``.
    mlflow_tracking_uri : str or None
        ``http://127.0.0.1:PORT``, for ``MLFLOW_TRACKING_URI``.
    prefect_api_url : str or None
        ``http://127.0.0.1:PORT/api``, for ``PREFECT_API_URL``.
    prefect_work_pool : str or None
        Name of the ``process`` work pool that the started Prefect worker polls.
    startup_s : dict of str to float
        Measured seconds from spawn to a served real request, per service.
    """

    state_dir: Path
    dask_address: str | None = None
    dask_dashboard_url: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_auth: bool = False
    prefect_api_url: str | None = None
    prefect_work_pool: str | None = None
    startup_s: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment variables that point clients (sweeps, flows, workers) at these services."""
        env = {}
        if self.dask_address:
            env["SWEEPNET_DASK_ADDRESS"] = self.dask_address
        if self.mlflow_tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
        return env

    def exports(self) -> str:
        """Shell ``export`` lines for :meth:`env` (credentials are never printed)."""
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        if self.mlflow_auth:
            lines.append("# MLflow basic auth: also export MLFLOW_TRACKING_USERNAME/PASSWORD")
        return "\n".join(lines)


def _client_host(host: str) -> str:
    """The address clients on this machine use for a server bound to ``host``."""
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


def _exe(name: str) -> str:
    """A console script installed next to the running interpreter (the project's venv)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise ServiceError(f"{name} not found next to {sys.executable}; install the project there")
    return str(path)


def _base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _record(state_dir: Path, recs: Iterable[procs.ProcRecord], service: str, info: dict) -> None:
    with _lock:
        state = procs.read_state(state_dir)
        for rec in recs:
            state["processes"][rec.name] = procs.record_dict(rec)
        state["services"][service] = info
        procs.write_state(state_dir, state)


# ---------------------------------------------------------------- Dask
def _dask_workers_ready(address: str, n_workers: int) -> bool:
    from distributed import Client

    try:
        with Client(address, timeout="3s") as client:
            return len(client.nthreads()) >= n_workers
    except OSError:
        return False


def _worker_cmd(address: str, host: str, i: int, ddir: Path) -> list[str]:
    return [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
            "--nworkers", "1", "--host", host, "--no-dashboard",
            # the worker's /health + /metrics HTTP server binds 0.0.0.0 unless told otherwise
            "--dashboard-address", f"{host}:0", "--name", f"sweepnet-worker-{i}",
            "--local-directory", str(ddir / f"worker-{i}")]


def start_dask(state_dir: Path, *, n_workers: int = 2, host: str = LOOPBACK,
               port: int | None = None, dashboard: bool = True, timeout: float = 120.0,
               env: dict[str, str] | None = None) -> dict:
    """Start ``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes.

    Each worker is its own process (nanny + worker) so that a test can kill one by PID.
    ``env`` is added to their environment (e.g. ``PREFECT_API_URL``, so that Prefect tasks on
    the workers never start a temporary server of their own). Returns the service info: address, dashboard URL and start-up seconds.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers={n_workers} must be >= 1; pass --dask-workers 1 or more")
    t0 = time.monotonic()
    ddir = (Path(state_dir) / "dask").resolve()
    ddir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host if host != "0.0.0.0" else LOOPBACK)
    address = f"tcp://{_client_host(host)}:{port}"
    dash = ["--no-dashboard"]
    dash_url = None
    if dashboard:
        dport = free_port(LOOPBACK)
        dash = ["--dashboard-address", f"{host}:{dport}"]
        dash_url = f"http://{_client_host(host)}:{dport}/status"
    sched_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
                 "--port", str(port), *dash, "--scheduler-file", str(ddir / "scheduler.json")]
    sched = procs.spawn(state_dir, "dask-scheduler", "dask", sched_cmd, _base_env(env), ddir)
    _record(state_dir, [sched], "dask", {"address": address, "starting": True})
    procs.wait_until(lambda: procs.tcp_open(_client_host(host), port), [sched],
                     "the Dask scheduler to listen", timeout)
    workers = [procs.spawn(state_dir, f"dask-worker-{i}", "dask",
                           _worker_cmd(address, host, i, ddir), _base_env(env), ddir)
               for i in range(n_workers)]
    _record(state_dir, workers, "dask", {"address": address, "starting": True})
    procs.wait_until(lambda: _dask_workers_ready(address, n_workers), [sched, *workers],
                     f"{n_workers} Dask workers to register", timeout)
    info = {"address": address, "dashboard_url": dash_url, "n_workers": n_workers,
            "startup_s": round(time.monotonic() - t0, 2)}
    _record(state_dir, [], "dask", info)
    return info


# ---------------------------------------------------------------- MLflow
def _mlflow_auth_env(state_dir: Path) -> tuple[dict[str, str], tuple[str, str]]:
    """Check the auth extra and the secrets in the environment; write the auth config file."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise ServiceError("MLflow basic auth needs the auth extra: pip install 'mlflow[auth]==3.17.2'")
    missing = [k for k in ("MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD")
               if not os.environ.get(k)]
    if missing:
        raise ServiceError(
            f"--mlflow-auth needs {' and '.join(missing)} in the environment (never in a file "
            "under version control), e.g. export MLFLOW_AUTH_ADMIN_PASSWORD=$(openssl rand -hex 16)")
    user = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    ini = Path(state_dir) / "mlflow" / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{ini.parent.resolve() / 'basic_auth.db'}\n"
        f"admin_username = {user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    ini.chmod(0o600)
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini.resolve()), "MLFLOW_AUTH_ADMIN_USERNAME": user}
    return env, (user, os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"])


def start_mlflow(state_dir: Path, *, host: str = LOOPBACK, port: int | None = None,
                 backend_store_uri: str | None = None, artifacts_destination: str | None = None,
                 auth: bool = False, timeout: float = 180.0) -> dict:
    """Start a lean ``mlflow server``: 1 worker, job execution off, proxied artifacts.

    The backend defaults to SQLite in ``<state_dir>/mlflow/mlflow.db`` and the artifacts to
    ``<state_dir>/mlflow/artifacts``; pass a ``postgresql://`` URI or ``s3://`` destination to
    use shared stores. With ``auth`` the server runs ``--app-name basic-auth``; the admin
    password and Flask secret key are read from the environment.
    """
    t0 = time.monotonic()
    mdir = (Path(state_dir) / "mlflow").resolve()
    mdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(LOOPBACK)
    backend = backend_store_uri or f"sqlite:///{mdir / 'mlflow.db'}"
    artifacts = artifacts_destination or str(mdir / "artifacts")
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [_exe("mlflow"), "server", "--host", host, "--port", str(port), "--workers", "1",
           "--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", artifacts]
    creds = None
    if auth:
        auth_env, creds = _mlflow_auth_env(state_dir)
        env.update(auth_env)
        cmd += ["--app-name", "basic-auth"]
    rec = procs.spawn(state_dir, "mlflow-server", "mlflow", cmd, _base_env(env), mdir)
    uri = f"http://{_client_host(host)}:{port}"
    _record(state_dir, [rec], "mlflow", {"tracking_uri": uri, "auth": auth, "starting": True})
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    procs.wait_until(lambda: http_status(f"{uri}/health") == 200
                     and http_status(search, auth=creds) == 200, [rec],
                     "the MLflow server to answer /health and an experiments search", timeout)
    info = {"tracking_uri": uri, "auth": auth, "backend_store_uri": backend,
            "artifacts_destination": artifacts, "startup_s": round(time.monotonic() - t0, 2)}
    _record(state_dir, [], "mlflow", info)
    return info


# ---------------------------------------------------------------- Prefect
def _prefect_env(state_dir: Path, api_url: str | None = None) -> dict[str, str]:
    env = {"PREFECT_HOME": str((Path(state_dir) / "prefect").resolve()),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _pool_has_worker(api: str, pool: str) -> bool:
    try:
        return bool(procs.http_json(f"{api}/work_pools/{pool}/workers/filter", {"limit": 5}))
    except OSError:
        return False


def _start_prefect_worker(state_dir: Path, api: str, pool: str, server: procs.ProcRecord,
                          cwd: Path | None, timeout: float) -> None:
    """``prefect worker start`` on a ``process`` pool (created if missing); waits until it polls."""
    cmd = [_exe("prefect"), "worker", "start", "--pool", pool, "--type", "process",
           "--name", f"{pool}-worker", "--install-policy", "never"]
    rec = procs.spawn(state_dir, "prefect-worker", "prefect", cmd,
                      _base_env(_prefect_env(state_dir, api)), cwd or Path.cwd())
    _record(state_dir, [rec], "prefect", {"api_url": api, "starting": True})
    procs.wait_until(lambda: _pool_has_worker(api, pool), [server, rec],
                     f"a Prefect worker to poll work pool {pool!r}", timeout)


def start_prefect(state_dir: Path, *, host: str = LOOPBACK, port: int | None = None,
                  pool: str = DEFAULT_POOL, worker: bool = True, ui: bool = True,
                  database_url: str | None = None, worker_cwd: Path | None = None,
                  timeout: float = 180.0) -> dict:
    """Start ``prefect server start`` and (optionally) a ``process`` work pool + ``prefect worker``.

    Readiness is a served ``/api/health`` *and* a flow-run query: the health route answers
    before the database and services are ready.
    """
    t0 = time.monotonic()
    pdir = (Path(state_dir) / "prefect").resolve()
    pdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(LOOPBACK)
    env = _prefect_env(state_dir)
    env["PREFECT_SERVER_UI_ENABLED"] = "true" if ui else "false"
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    cmd = [_exe("prefect"), "server", "start", "--host", host, "--port", str(port),
           "--analytics-off", "--no-background"]
    server_env = _base_env(env)
    server_env.pop("PREFECT_API_URL", None)
    server = procs.spawn(state_dir, "prefect-server", "prefect", cmd, server_env, pdir)
    api = f"http://{_client_host(host)}:{port}/api"
    _record(state_dir, [server], "prefect", {"api_url": api, "starting": True})
    procs.wait_until(lambda: http_status(f"{api}/health") == 200
                     and http_status(f"{api}/flow_runs/filter", body={"limit": 1}) == 200,
                     [server], "the Prefect server to answer /api/health and a flow-run query",
                     timeout)
    info = {"api_url": api, "work_pool": None, "server_startup_s": round(time.monotonic() - t0, 2)}
    if worker:
        _start_prefect_worker(state_dir, api, pool, server, worker_cwd, timeout)
        info["work_pool"] = pool
    info["startup_s"] = round(time.monotonic() - t0, 2)
    _record(state_dir, [], "prefect", info)
    return info


# ---------------------------------------------------------------- the set
def _parse_only(only: Iterable[str] | str | None) -> tuple[str, ...]:
    if only is None:
        return SERVICES
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    bad = [n for n in names if n not in SERVICES]
    if bad or not names:
        raise ValueError(f"only={only!r} names unknown services {bad}; choose from {','.join(SERVICES)}")
    return tuple(dict.fromkeys(names))


def _worker_env(sdir: Path, todo: list[str], host: str, ports: dict[str, int]) -> dict[str, str]:
    """URLs of the MLflow/Prefect services (running or about to start) for the Dask workers.

    Ports are chosen before anything starts so that the workers get them in their environment.
    """
    env = {k: v for k, v in load_service_set(sdir).env().items() if k != "SWEEPNET_DASK_ADDRESS"}
    if "mlflow" in todo:
        env["MLFLOW_TRACKING_URI"] = f"http://{_client_host(host)}:{ports['mlflow']}"
    if "prefect" in todo:
        env["PREFECT_API_URL"] = f"http://{_client_host(host)}:{ports['prefect']}/api"
    return env


def start_services(only: Iterable[str] | str | None = None, *, state_dir: Path | str | None = None,
                   host: str = LOOPBACK, dask_workers: int = 2, mlflow_auth: bool = False,
                   mlflow_backend_store_uri: str | None = None, prefect_pool: str = DEFAULT_POOL,
                   prefect_ui: bool = True, timeout: float = 180.0) -> ServiceSet:
    """Start the requested services concurrently (those already running are kept) and wait for them.

    Parameters
    ----------
    only : iterable of {"dask", "mlflow", "prefect"} or comma-separated str, optional
        Services to start; all three by default.
    state_dir : path, optional
        Where PIDs, logs and data live; ``.sweepnet/services`` by default.
    host : str
        Bind address. ``127.0.0.1`` by default; anything else exposes the service to the network.

    Raises
    ------
    ServiceError
        When a service exits or does not answer within ``timeout``; the services this call
        started are stopped again before raising.
    """
    names = _parse_only(only)
    sdir = Path(state_dir or DEFAULT_STATE_DIR).resolve()
    sdir.mkdir(parents=True, exist_ok=True)
    running = set(_running_services(sdir))
    todo = [n for n in names if n not in running]
    ports = {n: free_port(LOOPBACK) for n in ("mlflow", "prefect")}
    client_env = _worker_env(sdir, todo, host, ports)
    starters = {
        "dask": lambda: start_dask(sdir, n_workers=dask_workers, host=host, timeout=timeout,
                                   env=client_env),
        "mlflow": lambda: start_mlflow(sdir, host=host, port=ports["mlflow"], auth=mlflow_auth,
                                       backend_store_uri=mlflow_backend_store_uri, timeout=timeout),
        "prefect": lambda: start_prefect(sdir, host=host, port=ports["prefect"], pool=prefect_pool,
                                         ui=prefect_ui, timeout=timeout),
    }
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {n: pool.submit(starters[n]) for n in todo}
    errors = [f"{n}: {f.exception()}" for n, f in futures.items() if f.exception()]
    if errors:
        stop_services(sdir, only=todo)
        raise ServiceError("could not start services, stopped them again:\n" + "\n".join(errors))
    return load_service_set(sdir)


def _running_services(state_dir: Path) -> list[str]:
    """Services whose every recorded process is alive and whose start-up completed."""
    state = procs.read_state(state_dir)
    out = []
    for service, info in state["services"].items():
        recs = [procs.record_from(r) for r in state["processes"].values() if r["service"] == service]
        if recs and not info.get("starting") and all(procs.is_alive(r) for r in recs):
            out.append(service)
    return out


def load_service_set(state_dir: Path | str | None = None) -> ServiceSet:
    """The :class:`ServiceSet` of the services recorded as running in ``state_dir``."""
    sdir = Path(state_dir or DEFAULT_STATE_DIR)
    services = procs.read_state(sdir)["services"]
    live = set(_running_services(sdir))
    dask = services.get("dask", {}) if "dask" in live else {}
    mlflow = services.get("mlflow", {}) if "mlflow" in live else {}
    prefect = services.get("prefect", {}) if "prefect" in live else {}
    startup = {k: services[k]["startup_s"] for k in live if "startup_s" in services[k]}
    return ServiceSet(sdir, dask.get("address"), dask.get("dashboard_url"),
                      mlflow.get("tracking_uri"), bool(mlflow.get("auth")),
                      prefect.get("api_url"), prefect.get("work_pool"), startup)


def stop_services(state_dir: Path | str | None = None, *, only: Iterable[str] | str | None = None,
                  timeout: float = 10.0) -> list[str]:
    """Stop the processes recorded in ``state_dir`` (SIGTERM, then SIGKILL after ``timeout``).

    Returns the names of the processes that were running. Only PIDs recorded by
    :func:`start_services` are touched, and only if their creation time still matches.
    """
    names = _parse_only(only)
    sdir = Path(state_dir or DEFAULT_STATE_DIR)
    with _lock:
        state = procs.read_state(sdir)
    recs = [procs.record_from(r) for r in state["processes"].values() if r["service"] in names]
    recs.sort(key=lambda r: next(i for i, p in enumerate(_STOP_ORDER) if r.name.startswith(p)))
    # Services stop concurrently (the Prefect worker alone takes ~7 s to deregister);
    # within a service, in order: workers before their server.
    groups = {s: [r for r in recs if r.service == s] for s in names}
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        done = pool.map(lambda g: [r.name for r in g if procs.stop(r, timeout)], groups.values())
    stopped = [name for group in done for name in group]
    with _lock:
        state = procs.read_state(sdir)
        for rec in recs:
            state["processes"].pop(rec.name, None)
            (sdir / "pids" / f"{rec.name}.pid").unlink(missing_ok=True)
        for service in names:
            state["services"].pop(service, None)
        if sdir.exists():
            procs.write_state(sdir, state)
    return stopped


def service_status(state_dir: Path | str | None = None) -> list[dict]:
    """One row per recorded process: name, service, pid, alive, log; plus a health probe."""
    sdir = Path(state_dir or DEFAULT_STATE_DIR)
    state = procs.read_state(sdir)
    rows = []
    for data in state["processes"].values():
        rec = procs.record_from(data)
        rows.append({"name": rec.name, "service": rec.service, "pid": rec.pid,
                     "alive": procs.is_alive(rec), "log": rec.log})
    for service, info in state["services"].items():
        url = {"mlflow": info.get("tracking_uri", "") + "/health",
               "prefect": info.get("api_url", "") + "/health"}.get(service)
        healthy = http_status(url) == 200 if url else None
        for row in rows:
            if row["service"] == service:
                row["healthy"] = healthy if healthy is not None else row["alive"]
    return rows
