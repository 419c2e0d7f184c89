"""Start one local service each: a Dask scheduler + workers, an MLflow server, a Prefect server + worker.

Each ``start_*`` spawns detached processes (see :mod:`app.services.procs`), records them in the state
directory and returns only once the service answers a real request, not merely a health probe.
Everything binds 127.0.0.1 unless ``host`` says otherwise, which is an explicit choice.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

from app.services import procs
from app.services.procs import ServiceError, free_port, http_status

LOOPBACK = "127.0.0.1"
DEFAULT_POOL = "sweepnet-process"


def client_host(host: str) -> str:
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
    address = f"tcp://{client_host(host)}:{port}"
    dash = ["--no-dashboard"]
    dash_url = None
    if dashboard:
        dport = free_port(LOOPBACK)
        dash = ["--dashboard-address", f"{host}:{dport}"]
        dash_url = f"http://{client_host(host)}:{dport}/status"
    sched_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
                 "--port", str(port), *dash, "--scheduler-file", str(ddir / "scheduler.json")]
    sched = procs.spawn(state_dir, "dask-scheduler", "dask", sched_cmd, _base_env(env), ddir)
    procs.record_service(state_dir, [sched], "dask", {"address": address, "starting": True})
    procs.wait_until(lambda: procs.tcp_open(client_host(host), port), [sched],
                     "the Dask scheduler to listen", timeout)
    workers = [procs.spawn(state_dir, f"dask-worker-{i}", "dask",
                           _worker_cmd(address, host, i, ddir), _base_env(env), ddir)
               for i in range(n_workers)]
    procs.record_service(state_dir, workers, "dask", {"address": address, "starting": True})
    procs.wait_until(lambda: _dask_workers_ready(address, n_workers), [sched, *workers],
                     f"{n_workers} Dask workers to register", timeout)
    info = {"address": address, "dashboard_url": dash_url, "n_workers": n_workers,
            "startup_s": round(time.monotonic() - t0, 2)}
    procs.record_service(state_dir, [], "dask", info)
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
    if client_host(host) != LOOPBACK:
        # MLflow answers only Host headers it knows (a DNS-rebinding guard: localhost and private ranges by
        # default), so a server bound to a routable address must be told its own name
        cmd += ["--allowed-hosts", ",".join(["localhost", "localhost:*", LOOPBACK, f"{LOOPBACK}:*", host,
                                             f"{host}:{port}"])]
    creds = None
    if auth:
        auth_env, creds = _mlflow_auth_env(state_dir)
        env.update(auth_env)
        cmd += ["--app-name", "basic-auth"]
    rec = procs.spawn(state_dir, "mlflow-server", "mlflow", cmd, _base_env(env), mdir)
    uri = f"http://{client_host(host)}:{port}"
    procs.record_service(state_dir, [rec], "mlflow", {"tracking_uri": uri, "auth": auth, "starting": True})
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    procs.wait_until(lambda: http_status(f"{uri}/health") == 200
                     and http_status(search, auth=creds) == 200, [rec],
                     "the MLflow server to answer /health and an experiments search", timeout)
    info = {"tracking_uri": uri, "auth": auth, "backend_store_uri": backend,
            "artifacts_destination": artifacts, "startup_s": round(time.monotonic() - t0, 2)}
    procs.record_service(state_dir, [], "mlflow", info)
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
    procs.record_service(state_dir, [rec], "prefect", {"api_url": api, "starting": True})
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
    if ui:  # the UI's own API address defaults to 127.0.0.1:4200: on any other port its pages cannot load
        env["PREFECT_UI_API_URL"] = f"http://{client_host(host)}:{port}/api"
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    cmd = [_exe("prefect"), "server", "start", "--host", host, "--port", str(port),
           "--analytics-off", "--no-background"]
    server_env = _base_env(env)
    server_env.pop("PREFECT_API_URL", None)
    server = procs.spawn(state_dir, "prefect-server", "prefect", cmd, server_env, pdir)
    api = f"http://{client_host(host)}:{port}/api"
    procs.record_service(state_dir, [server], "prefect", {"api_url": api, "starting": True})
    procs.wait_until(lambda: http_status(f"{api}/health") == 200
                     and http_status(f"{api}/flow_runs/filter", body={"limit": 1}) == 200,
                     [server], "the Prefect server to answer /api/health and a flow-run query",
                     timeout)
    info = {"api_url": api, "work_pool": None, "server_startup_s": round(time.monotonic() - t0, 2)}
    if worker:
        _start_prefect_worker(state_dir, api, pool, server, worker_cwd, timeout)
        info["work_pool"] = pool
    info["startup_s"] = round(time.monotonic() - t0, 2)
    procs.record_service(state_dir, [], "prefect", info)
    return info

