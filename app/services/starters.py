"""Start one local service each: a Dask scheduler + workers, an MLflow server, a Prefect server + worker.

Each ``start_*`` spawns detached processes (see :mod:`app.services.procs`), records them in the state
directory and returns only once the service answers a real request, not merely a health probe.
Everything binds 127.0.0.1 unless ``host`` says otherwise, which is an explicit choice. Each can be locked:
Dask with TLS (``tls``: certificates from :mod:`app.services.credentials`), MLflow with basic auth and a
non-admin pipeline user (``auth``), Prefect with an API auth string (``auth_string``). Server secrets
(:data:`SERVER_SECRETS`) reach only the server that needs them, never a worker's environment.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pipeline.tracking import redact_uri

from app.services import credentials, procs
from app.services.procs import ServiceError, free_port, http_status

LOOPBACK = "127.0.0.1"
DEFAULT_POOL = "sweepnet-process"
PIPELINE_USER = "sweepnet-pipeline"
PREFECT_USER = "sweepnet"
#: How long the Dask scheduler waits on a silent worker before it reschedules its tasks (Dask's default: 5 minutes,
#: which a worker host cut off the network would hold its chunks for); the compose and Kubernetes schedulers set it too.
WORKER_TTL = "60s"
AUTH_CACHE_TTL_S = 60  # seconds a checked MLflow credential is trusted (per server worker); 0 = scrypt per request
SERVER_SECRETS = ("MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_BACKEND_STORE_URI",
                  "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_DATABASE_CONNECTION_URL", "PGPASSWORD")


def client_host(host: str) -> str:
    """The address clients on this machine use for a server bound to ``host``."""
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


def other_hosts_note(host: str) -> str:
    """For a wildcard bind, a shell comment telling users on *other* hosts which address to put in place of
    the loopback one in the exports (they name 127.0.0.1, which only this machine can use); else ``""``."""
    if client_host(host) == host:
        return ""
    import psutil

    addrs = sorted({a.address for nics in psutil.net_if_addrs().values() for a in nics
                    if a.family.name == "AF_INET" and not a.address.startswith("127.")})
    names = ", ".join(addrs) or "this machine's address"
    return (f"# bound to {host}: the exports below work on this machine; on another host replace "
            f"{LOOPBACK} with one of {names} (and copy the Dask TLS files named in DASK_* there)")


def _exe(name: str) -> str:
    """A console script installed next to the running interpreter (the project's venv)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise ServiceError(f"{name} not found next to {sys.executable}; install the project there")
    return str(path)


def _base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without server secrets, plus ``extra`` (a server passes its own there)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_SECRETS}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


# ---------------------------------------------------------------- Dask
def dask_security(tls: dict[str, str] | None):
    """A client-side ``distributed.Security`` for the certificates of :func:`credentials.dask_tls` (None: plain)."""
    if not tls:
        return None
    from distributed.security import Security

    return Security(tls_ca_file=tls["ca"], tls_client_cert=tls["client"], tls_client_key=tls["client-key"],
                    require_encryption=True)


def _dask_workers_ready(address: str, n_workers: int, tls: dict[str, str] | None = None) -> bool:
    from distributed import Client

    try:
        with Client(address, timeout="3s", security=dask_security(tls)) as client:
            return len(client.nthreads()) >= n_workers
    except OSError:
        return False


def _tls_args(tls: dict[str, str] | None) -> list[str]:
    if not tls:
        return []
    return ["--protocol", "tls", "--tls-ca-file", tls["ca"], "--tls-cert", tls["server"],
            "--tls-key", tls["server-key"]]


def _worker_cmd(address: str, host: str, i: int, ddir: Path, tls: dict[str, str] | None = None,
                memory_limit: str | None = None) -> list[str]:
    # the worker's /health + /metrics HTTP server binds 0.0.0.0 unless told otherwise; it has no TLS, so a
    # locked-down worker keeps it on loopback
    http_host = LOOPBACK if tls else host
    limit = ["--memory-limit", memory_limit] if memory_limit else []
    return [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", *limit,
            "--nworkers", "1", "--host", host, "--no-dashboard",
            "--dashboard-address", f"{http_host}:0", "--name", f"sweepnet-worker-{i}",
            "--local-directory", str(ddir / f"worker-{i}"), *_tls_args(tls)]


def start_dask(state_dir: Path, *, n_workers: int = 2, host: str = LOOPBACK,
               port: int | None = None, dashboard: bool = True, timeout: float = 120.0,
               env: dict[str, str] | None = None, tls: bool = False, memory_limit: str | None = None) -> dict:
    """Start ``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes
    (each with ``--memory-limit memory_limit`` when given, e.g. ``"2GiB"``: the nanny restarts a worker past it).

    Each worker is its own process (nanny + worker) so that a test can kill one by PID.
    ``env`` is added to their environment (e.g. ``PREFECT_API_URL``, so that Prefect tasks on
    the workers never start a temporary server of their own). With ``tls`` every connection (scheduler,
    workers, clients) is mutual TLS with certificates of a CA made for this state directory, the address is
    ``tls://`` and the plain-HTTP dashboard stays on loopback. Returns the service info: address, dashboard
    URL, TLS file paths and start-up seconds.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers={n_workers} must be >= 1; pass --dask-workers 1 or more")
    t0 = time.monotonic()
    ddir = procs.private_dir((Path(state_dir) / "dask").resolve())
    port = port or free_port(host if host != "0.0.0.0" else LOOPBACK)
    certs = credentials.dask_tls(state_dir, [client_host(host)]) if tls else None
    address = f"{'tls' if tls else 'tcp'}://{client_host(host)}:{port}"
    dash = ["--no-dashboard"]
    dash_url = None
    if dashboard:
        dport = free_port(LOOPBACK)
        dash_host = LOOPBACK if tls else host
        dash = ["--dashboard-address", f"{dash_host}:{dport}"]
        dash_url = f"http://{client_host(dash_host)}:{dport}/status"
    sched_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
                 "--port", str(port), *dash, "--scheduler-file", str(ddir / "scheduler.json"), *_tls_args(certs)]
    sched_env = _base_env(env)
    sched_env.setdefault("DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL", WORKER_TTL)  # the caller's own value wins
    sched = procs.spawn(state_dir, "dask-scheduler", "dask", sched_cmd, sched_env, ddir)
    procs.record_service(state_dir, [sched], "dask", {"address": address, "starting": True})
    procs.wait_until(lambda: procs.tcp_open(client_host(host), port), [sched],
                     "the Dask scheduler to listen", timeout)
    workers = [procs.spawn(state_dir, f"dask-worker-{i}", "dask",
                           _worker_cmd(address, host, i, ddir, certs, memory_limit), _base_env(env), ddir)
               for i in range(n_workers)]
    procs.record_service(state_dir, workers, "dask", {"address": address, "starting": True})
    procs.wait_until(lambda: _dask_workers_ready(address, n_workers, certs), [sched, *workers],
                     f"{n_workers} Dask workers to register", timeout)
    info = {"address": address, "dashboard_url": dash_url, "n_workers": n_workers, "tls": certs,
            "startup_s": round(time.monotonic() - t0, 2)}
    procs.record_service(state_dir, [], "dask", info)
    return info


# ---------------------------------------------------------------- Prefect
def _prefect_env(state_dir: Path, api_url: str | None = None, auth_string: str | None = None) -> dict[str, str]:
    env = {"PREFECT_HOME": str((Path(state_dir) / "prefect").resolve()),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if auth_string:
        env["PREFECT_API_AUTH_STRING"] = auth_string
    return env


def prefect_auth_string(state_dir: Path) -> str:
    """``user:password`` of the Prefect API (generated once per state directory)."""
    return f"{PREFECT_USER}:{credentials.secret(state_dir, 'prefect-api-password')}"


def _basic(auth_string: str | None) -> tuple[str, str] | None:
    return tuple(auth_string.split(":", 1)) if auth_string else None  # type: ignore[return-value]


def _pool_has_worker(api: str, pool: str, auth_string: str | None = None) -> bool:
    try:
        return bool(procs.http_json(f"{api}/work_pools/{pool}/workers/filter", {"limit": 5},
                                    auth=_basic(auth_string)))
    except OSError:
        return False


def _start_prefect_worker(state_dir: Path, api: str, pool: str, server: procs.ProcRecord,
                          cwd: Path | None, timeout: float, auth_string: str | None = None,
                          env: dict[str, str] | None = None) -> None:
    """``prefect worker start`` on a ``process`` pool (created if missing); waits until it polls."""
    cmd = [_exe("prefect"), "worker", "start", "--pool", pool, "--type", "process",
           "--name", f"{pool}-worker", "--install-policy", "never"]
    rec = procs.spawn(state_dir, "prefect-worker", "prefect", cmd,
                      _base_env({**(env or {}), **_prefect_env(state_dir, api, auth_string)}), cwd or Path.cwd())
    procs.record_service(state_dir, [rec], "prefect", {"api_url": api, "starting": True})
    procs.wait_until(lambda: _pool_has_worker(api, pool, auth_string), [server, rec],
                     f"a Prefect worker to poll work pool {pool!r}", timeout)


def start_prefect(state_dir: Path, *, host: str = LOOPBACK, port: int | None = None,
                  pool: str = DEFAULT_POOL, worker: bool = True, ui: bool = True,
                  database_url: str | None = None, worker_cwd: Path | None = None,
                  auth: bool = False, worker_env: dict[str, str] | None = None, timeout: float = 180.0) -> dict:
    """Start ``prefect server start`` and (optionally) a ``process`` work pool + ``prefect worker``.

    Readiness is a served ``/api/health`` *and* a flow-run query: the health route answers
    before the database and services are ready. CORS admits the UI's own origin only. With ``auth`` the
    API wants ``PREFECT_API_AUTH_STRING`` (:func:`prefect_auth_string`) from every client but the health
    probes; ``database_url`` (e.g. ``postgresql+asyncpg://...``) reaches the server's environment only.
    ``worker_env`` is added to the worker's environment (the flow runs it starts inherit it: e.g. the
    MLflow URI and pipeline credentials for scheduled sweeps).
    """
    t0 = time.monotonic()
    pdir = procs.private_dir((Path(state_dir) / "prefect").resolve())
    port = port or free_port(LOOPBACK)
    env = _prefect_env(state_dir)
    env["PREFECT_SERVER_UI_ENABLED"] = "true" if ui else "false"
    env["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"] = f"http://{client_host(host)}:{port}"
    auth_string = prefect_auth_string(state_dir) if auth else None
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
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
                     and http_status(f"{api}/flow_runs/filter", body={"limit": 1},
                                     auth=_basic(auth_string)) == 200,
                     [server], "the Prefect server to answer /api/health and a flow-run query",
                     timeout)
    info = {"api_url": api, "work_pool": None, "auth": bool(auth_string),
            "database": redact_uri(database_url) if database_url else "sqlite",
            "server_startup_s": round(time.monotonic() - t0, 2)}
    if worker:
        _start_prefect_worker(state_dir, api, pool, server, worker_cwd, timeout, auth_string, worker_env)
        info["work_pool"] = pool
    info["startup_s"] = round(time.monotonic() - t0, 2)
    procs.record_service(state_dir, [], "prefect", info)
    return info

