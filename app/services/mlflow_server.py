"""A lean local ``mlflow server`` (1 worker unless asked, job execution off, proxied artifacts), optionally with
basic auth.

With auth the server runs ``--app-name basic-auth`` with an auth ini that sets ``auth_cache_ttl_seconds``
(without it every request pays a scrypt password check: ~110 ms of CPU measured here), and setup creates a
non-admin *pipeline user* for sweeps and workers. The admin password and the Flask secret key stay with the
operator: read from ``MLFLOW_AUTH_ADMIN_PASSWORD`` / ``MLFLOW_FLASK_SERVER_SECRET_KEY`` when set, otherwise
generated into ``<state_dir>/secrets/`` (0600), and passed to the server process only. The backend store URI
(which may carry a database password) goes through the server's environment, never its command line.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from pipeline.tracking import redact_uri

from app.services import credentials, procs
from app.services.procs import ServiceError, free_port, http_status
from app.services.starters import (AUTH_CACHE_TTL_S, LOOPBACK, PIPELINE_USER, _base_env, _exe,
                                   client_host)


def _auth_ini(state_dir: Path, admin_user: str, cache_ttl: int) -> Path:
    ini = (Path(state_dir) / "mlflow" / "basic_auth.ini").resolve()
    credentials.write_private(ini, (
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{ini.parent / 'basic_auth.db'}\n"
        f"admin_username = {admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {int(cache_ttl)}\n"))
    return ini


def _auth_env(state_dir: Path, cache_ttl: int) -> tuple[dict[str, str], tuple[str, str]]:
    """The auth server's environment (secrets included) and the admin credentials."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise ServiceError("MLflow basic auth needs the auth extra: pip install 'mlflow[auth]==3.17.2'")
    user = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") or credentials.secret(state_dir, "mlflow-admin-password")
    key = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or credentials.secret(state_dir, "mlflow-flask-secret-key")
    ini = _auth_ini(state_dir, user, cache_ttl)
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_USERNAME": user,
           "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": key}
    return env, (user, password)


def pipeline_credentials(state_dir: Path) -> tuple[str, str]:
    """The pipeline user's name and password (generated once per state directory)."""
    return PIPELINE_USER, credentials.secret(state_dir, "mlflow-pipeline-password")


def ensure_pipeline_user(uri: str, admin: tuple[str, str], user: tuple[str, str]) -> None:
    """Create the non-admin pipeline user (or reset its password) and check that it can log in.

    It needs no grant: an experiment's creator gets MANAGE on it, so the sweep driver (which creates the
    experiment) and the workers (same user) can write its runs; other experiments stay READ.
    """
    api = f"{uri}/api/2.0/mlflow/users"
    status = http_status(f"{api}/create", body={"username": user[0], "password": user[1]}, auth=admin)
    if status not in (200, 400):  # 400: it exists (a restarted server on the same user store)
        raise ServiceError(f"creating MLflow user {user[0]!r} failed: HTTP {status}")
    if status == 400:
        status = http_status(f"{api}/update-password", body={"username": user[0], "password": user[1]},
                             auth=admin, method="PATCH")
        if status != 200:
            raise ServiceError(f"resetting the password of MLflow user {user[0]!r} failed: HTTP {status}")
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    if http_status(search, auth=user) != 200:
        raise ServiceError(f"the MLflow pipeline user {user[0]!r} cannot search experiments")


def check_workers(workers, name: str = "workers") -> None:
    """Refuse a worker count the server cannot run with (before anything is started)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{name}={workers!r}: the MLflow server needs 1 or more worker processes; "
                         "pass --mlflow-workers 1 or more")


def start_mlflow(state_dir: Path, *, host: str = LOOPBACK, port: int | None = None,
                 backend_store_uri: str | None = None, artifacts_destination: str | None = None,
                 auth: bool = False, auth_cache_ttl: int = AUTH_CACHE_TTL_S, timeout: float = 180.0,
                 workers: int = 1) -> dict:
    """Start a lean ``mlflow server``: ``workers`` uvicorn worker processes (1), job execution off, proxied artifacts.

    The backend defaults to SQLite in ``<state_dir>/mlflow/mlflow.db`` and the artifacts to
    ``<state_dir>/mlflow/artifacts``; pass a ``postgresql+psycopg2://`` URI or ``s3://`` destination to
    use shared stores. With ``auth`` the server runs ``--app-name basic-auth`` and the pipeline user exists
    when this returns; each worker keeps its own credential cache (``auth_cache_ttl`` seconds). The info
    recorded (and returned) carries no password.
    """
    check_workers(workers)
    t0 = time.monotonic()
    mdir = procs.private_dir((Path(state_dir) / "mlflow").resolve())  # the auth user store lives here
    port = port or free_port(LOOPBACK)
    backend = backend_store_uri or f"sqlite:///{mdir / 'mlflow.db'}"
    artifacts = artifacts_destination or str(mdir / "artifacts")
    uri = f"http://{client_host(host)}:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": backend,
           "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": uri}  # the UI's own origin, as for Prefect
    cmd = [_exe("mlflow"), "server", "--host", host, "--port", str(port), "--workers", str(workers),
           "--serve-artifacts", "--artifacts-destination", artifacts]
    if client_host(host) != LOOPBACK:
        # MLflow answers only Host headers it knows (a DNS-rebinding guard: localhost and private ranges by
        # default), so a server bound to a routable address must be told its own name
        cmd += ["--allowed-hosts", ",".join(["localhost", "localhost:*", LOOPBACK, f"{LOOPBACK}:*", host,
                                             f"{host}:{port}"])]
    admin = None
    if auth:
        auth_env, admin = _auth_env(state_dir, auth_cache_ttl)
        env.update(auth_env)
        cmd += ["--app-name", "basic-auth"]
    rec = procs.spawn(state_dir, "mlflow-server", "mlflow", cmd, _base_env(env), mdir)
    procs.record_service(state_dir, [rec], "mlflow", {"tracking_uri": uri, "auth": auth, "starting": True})
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    procs.wait_until(lambda: http_status(f"{uri}/health") == 200
                     and http_status(search, auth=admin) == 200, [rec],
                     "the MLflow server to answer /health and an experiments search", timeout)
    info = {"tracking_uri": uri, "auth": auth, "backend_store_uri": redact_uri(backend),
            "artifacts_destination": artifacts, "workers": workers}
    if auth:
        ensure_pipeline_user(uri, admin, pipeline_credentials(state_dir))
        info.update(pipeline_user=PIPELINE_USER, auth_cache_ttl_seconds=auth_cache_ttl)
    info["startup_s"] = round(time.monotonic() - t0, 2)
    procs.record_service(state_dir, [], "mlflow", info)
    return info
