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

import shlex
import signal
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from app.services import credentials, postgres, procs
from app.services.mlflow_server import check_workers, pipeline_credentials, start_mlflow
from app.services.procs import ServiceError, free_port, http_status
from app.services.starters import (DEFAULT_POOL, LOOPBACK, client_host, prefect_auth_string, start_dask,
                                   start_prefect)

DEFAULT_STATE_DIR = Path(".sweepnet") / "services"
SERVICES = ("dask", "mlflow", "prefect")
# postgres starts with --backend postgres (or --only postgres); watch is the idle watch of services kept between
# sweeps (app.services.keep): never started here, stopped by `down` with the rest
ALL_SERVICES = (*SERVICES, "postgres", "watch")
_STOP_ORDER = ("sweepnet-idle-watch", "prefect-worker", "prefect-server", "mlflow-server", "dask-worker", "dask-scheduler", "postgres")


@dataclass(frozen=True)
class ServiceSet:
    """Where the running services answer (None for a service that is not running), and how clients log in.

    Attributes
    ----------
    state_dir : Path
        The state directory that records the processes.
    dask_address : str or None
        ``tcp://127.0.0.1:PORT`` (``tls://`` when locked), for ``distributed.Client`` or ``--dask-address``.
    mlflow_tracking_uri : str or None
        ``http://127.0.0.1:PORT``, for ``MLFLOW_TRACKING_URI``.
    prefect_api_url : str or None
        ``http://127.0.0.1:PORT/api``, for ``PREFECT_API_URL``.
    prefect_work_pool : str or None
        Name of the ``process`` work pool that the started Prefect worker polls.
    startup_s : dict of str to float
        Measured seconds from spawn to a served real request, per service.
    mlflow_credentials : (str, str) or None
        The MLflow *pipeline* user (never the admin), when MLflow runs with basic auth.
    prefect_auth_string : str or None
        ``PREFECT_API_AUTH_STRING`` when the Prefect API wants one.
    dask_tls : dict or None
        Paths of the Dask CA and certificates (``ca``, ``client``, ``client-key``, ...) when Dask speaks TLS.
    postgres : dict or None
        Host, port and databases of the local PostgreSQL (no password).
    """

    state_dir: Path
    dask_address: str | None = None
    dask_dashboard_url: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_auth: bool = False
    prefect_api_url: str | None = None
    prefect_work_pool: str | None = None
    startup_s: dict[str, float] = field(default_factory=dict)
    mlflow_credentials: tuple[str, str] | None = field(default=None, repr=False)
    prefect_auth_string: str | None = field(default=None, repr=False)
    dask_tls: dict[str, str] | None = None
    postgres: dict | None = None

    def env(self) -> dict[str, str]:
        """Environment variables that point clients (sweeps, flows, workers) at these services, with the
        pipeline's credentials (never a server secret or the MLflow admin password)."""
        env = {}
        if self.dask_address:
            env["SWEEPNET_DASK_ADDRESS"] = self.dask_address
            if self.dask_tls:
                env.update(credentials.dask_tls_env(self.dask_tls))
        if self.mlflow_tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
            if self.mlflow_credentials:
                env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = self.mlflow_credentials
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
            if self.prefect_auth_string:
                env["PREFECT_API_AUTH_STRING"] = self.prefect_auth_string
        return env

    def exports(self) -> str:
        """Shell ``export`` lines for :meth:`env`: the pipeline's credentials, so keep the output private."""
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        if self.mlflow_auth and not self.mlflow_credentials:
            lines.append("# MLflow basic auth: also export MLFLOW_TRACKING_USERNAME/PASSWORD")
        return "\n".join(lines)


# ---------------------------------------------------------------- the set
def _parse_only(only: Iterable[str] | str | None, allowed: tuple[str, ...] = SERVICES) -> tuple[str, ...]:
    if only is None:
        return allowed
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    bad = [n for n in names if n not in ALL_SERVICES]
    if bad or not names:
        raise ValueError(f"only={only!r} names unknown services {bad}; choose from {','.join(ALL_SERVICES)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Locks:
    """Which services are locked: MLflow basic auth, Prefect API auth string, Dask TLS."""

    mlflow: bool
    prefect: bool
    dask: bool

    @classmethod
    def resolve(cls, host: str, auth: bool | None, mlflow: bool | None, prefect: bool | None,
                dask: bool | None) -> "Locks":
        """On by default outside loopback; ``auth`` sets all three, a per-service flag wins over it."""
        default = host != LOOPBACK if auth is None else auth
        return cls(*(default if flag is None else flag for flag in (mlflow, prefect, dask)))


def _worker_env(sdir: Path, todo: list[str], host: str, ports: dict[str, int], locks: Locks) -> dict[str, str]:
    """URLs and pipeline credentials of the MLflow/Prefect services (running or about to start) for the
    Dask workers. Ports and passwords are chosen before anything starts so that the workers get them."""
    env = {k: v for k, v in load_service_set(sdir).env().items()
           if k != "SWEEPNET_DASK_ADDRESS" and not k.startswith("DASK_")}
    if "mlflow" in todo:
        env["MLFLOW_TRACKING_URI"] = f"http://{client_host(host)}:{ports['mlflow']}"
        if locks.mlflow:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = pipeline_credentials(sdir)
        else:
            env.pop("MLFLOW_TRACKING_USERNAME", None), env.pop("MLFLOW_TRACKING_PASSWORD", None)
    if "prefect" in todo:
        env["PREFECT_API_URL"] = f"http://{client_host(host)}:{ports['prefect']}/api"
        if locks.prefect:
            env["PREFECT_API_AUTH_STRING"] = prefect_auth_string(sdir)
        else:
            env.pop("PREFECT_API_AUTH_STRING", None)
    return env


def _databases(sdir: Path, names: tuple[str, ...], backend: str, running: set[str],
               timeout: float) -> dict[str, str]:
    """Start PostgreSQL when asked (before the servers that use it); the database URLs for those servers."""
    if backend not in ("sqlite", "postgres"):
        raise ValueError(f"backend={backend!r}; choose sqlite or postgres")
    if backend != "postgres" and "postgres" not in names:
        return {}
    if "postgres" in running:
        info = procs.read_state(sdir)["services"]["postgres"]
    else:
        info = postgres.start_postgres(sdir, host=LOOPBACK, timeout=timeout)  # the servers are on this host
    if backend != "postgres":
        return {}
    return {"mlflow": postgres.database_url(sdir, info, "mlflow", "psycopg2"),
            "prefect": postgres.database_url(sdir, info, "prefect", "asyncpg")}


def start_services(only: Iterable[str] | str | None = None, *, state_dir: Path | str | None = None,
                   host: str = LOOPBACK, dask_workers: int = 2, backend: str = "sqlite",
                   auth: bool | None = None, mlflow_auth: bool | None = None, prefect_auth: bool | None = None,
                   dask_tls: bool | None = None, mlflow_backend_store_uri: str | None = None,
                   prefect_pool: str = DEFAULT_POOL, prefect_ui: bool = True, timeout: float = 180.0,
                   mlflow_workers: int = 1) -> ServiceSet:
    """Start the requested services concurrently (those already running are kept) and wait for them.

    Parameters
    ----------
    only : iterable of {"dask", "mlflow", "prefect", "postgres"} or comma-separated str, optional
        Services to start; dask, mlflow and prefect by default.
    state_dir : path, optional
        Where PIDs, logs, secrets and data live; ``.sweepnet/services`` by default.
    host : str
        Bind address. ``127.0.0.1`` by default; anything else exposes the service to the network and turns
        auth on unless ``auth=False``.
    backend : {"sqlite", "postgres"}
        ``postgres``: a local PostgreSQL cluster (started first, on loopback) holds MLflow's backend store
        and the Prefect database.
    auth, mlflow_auth, prefect_auth, dask_tls : bool, optional
        Lock the services: MLflow basic auth with a pipeline user, the Prefect API auth string, Dask TLS.
        ``None`` means "on when ``host`` is not loopback"; ``auth`` sets the default of the other three.
    mlflow_workers : int
        ``mlflow server --workers``: worker processes serving the tracking API (1 by default).

    Raises
    ------
    ServiceError
        When a service exits or does not answer within ``timeout``; the services this call
        started are stopped again before raising.
    """
    names = _parse_only(only)
    check_workers(mlflow_workers, "mlflow_workers")  # before anything starts
    if backend == "postgres" and mlflow_backend_store_uri:
        raise ValueError("pass either backend='postgres' or mlflow_backend_store_uri, not both")
    locks = Locks.resolve(host, auth, mlflow_auth, prefect_auth, dask_tls)
    sdir = Path(state_dir or DEFAULT_STATE_DIR).resolve()
    sdir.mkdir(parents=True, exist_ok=True)
    sdir.chmod(0o711)  # others may traverse (PostgreSQL runs as its own user), not list
    running = _replace_kept(sdir, names)
    todo = [n for n in names if n not in running and n not in ("postgres", "watch")]
    try:
        dbs = _databases(sdir, names, backend, running, timeout)
    except ServiceError:
        stop_services(sdir, only=["postgres"])
        raise
    ports = {n: free_port(LOOPBACK) for n in ("mlflow", "prefect")}
    client_env = _worker_env(sdir, todo, host, ports, locks)
    starters = {
        "dask": lambda: start_dask(sdir, n_workers=dask_workers, host=host, timeout=timeout,
                                   env=client_env, tls=locks.dask),
        "mlflow": lambda: start_mlflow(sdir, host=host, port=ports["mlflow"], auth=locks.mlflow,
                                       backend_store_uri=mlflow_backend_store_uri or dbs.get("mlflow"),
                                       timeout=timeout, workers=mlflow_workers),
        "prefect": lambda: start_prefect(sdir, host=host, port=ports["prefect"], pool=prefect_pool,
                                         ui=prefect_ui, database_url=dbs.get("prefect"), auth=locks.prefect,
                                         timeout=timeout),
    }
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {n: pool.submit(starters[n]) for n in todo}
    errors = [f"{n}: {f.exception()}" for n, f in futures.items() if f.exception()]
    if errors:
        started_db = ["postgres"] if dbs or "postgres" in names else []
        stop_services(sdir, only=todo + [s for s in started_db if s not in running])
        raise ServiceError("could not start services, stopped them again:\n" + "\n".join(errors))
    return load_service_set(sdir)


def _replace_kept(sdir: Path, names: tuple[str, ...]) -> set[str]:
    """The running services, after stopping those of ``names`` that a sweep kept (``app.services.keep``: a
    Prefect server without work pool or UI, Dask workers set up for that server) so that ``up`` starts its own."""
    state = procs.read_state(sdir)["services"]
    running = set(_running_services(sdir))
    kept = [n for n in names if n in running and state[n].get("kept")]
    if kept:
        stop_services(sdir, only=kept)
    return running - set(kept)


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
    dask, mlflow, prefect, pg = (services.get(n, {}) if n in live else {} for n in ("dask", "mlflow", "prefect",
                                                                                    "postgres"))
    startup = {k: services[k]["startup_s"] for k in live if "startup_s" in services[k]}
    return ServiceSet(
        sdir, dask.get("address"), dask.get("dashboard_url"), mlflow.get("tracking_uri"), bool(mlflow.get("auth")),
        prefect.get("api_url"), prefect.get("work_pool"), startup,
        mlflow_credentials=pipeline_credentials(sdir) if mlflow.get("pipeline_user") else None,
        prefect_auth_string=prefect_auth_string(sdir) if prefect.get("auth") else None,
        dask_tls=dask.get("tls") or None, postgres={k: pg[k] for k in ("host", "port", "databases")} if pg else None)


def stop_services(state_dir: Path | str | None = None, *, only: Iterable[str] | str | None = None,
                  timeout: float = 10.0) -> list[str]:
    """Stop the processes recorded in ``state_dir`` (SIGTERM, then SIGKILL after ``timeout``).

    Returns the names of the processes that were running. Only PIDs recorded by
    :func:`start_services` are touched, and only if their creation time still matches.
    PostgreSQL stops last (its clients first), with SIGINT: its fast shutdown.
    """
    names = _parse_only(only, ALL_SERVICES)
    sdir = Path(state_dir or DEFAULT_STATE_DIR)
    with procs.STATE_LOCK:
        state = procs.read_state(sdir)
    recs = [procs.record_from(r) for r in state["processes"].values() if r["service"] in names]
    recs.sort(key=lambda r: next(i for i, p in enumerate(_STOP_ORDER) if r.name.startswith(p)))
    # Services stop concurrently (the Prefect worker alone takes ~7 s to deregister);
    # within a service, in order: workers before their server.
    groups = {s: [r for r in recs if r.service == s] for s in names if s != "postgres"}
    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        done = pool.map(lambda g: [r.name for r in g if procs.stop(r, timeout)], groups.values())
    stopped = [name for group in done for name in group]
    stopped += [r.name for r in recs if r.service == "postgres" and procs.stop(r, timeout, signal.SIGINT)]
    with procs.STATE_LOCK:
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
