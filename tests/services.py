"""Pytest fixtures that start real local services and stop them by PID at the end of the session.

Enable in ``tests/conftest.py`` with::

    pytest_plugins = ["tests.services"]

Fixtures (session scope unless noted), each backed by :mod:`app.services`:

- ``dask_cluster_address``: ``tcp://127.0.0.1:PORT`` of a ``dask scheduler`` with two
  single-threaded ``dask worker`` processes (the project importable on them).
- ``mlflow_server_uri``: ``http://127.0.0.1:PORT`` of a lean ``mlflow server`` (SQLite backend,
  proxied artifacts under the session's temporary directory).
- ``prefect_server_url``: ``http://127.0.0.1:PORT/api`` of ``prefect server`` with a ``process``
  work pool polled by a ``prefect worker``.
- ``local_services``: all three as a :class:`app.services.ServiceSet` (started concurrently).
- ``local_services_env`` (function scope): ``local_services`` with ``SWEEPNET_DASK_ADDRESS``,
  ``MLFLOW_TRACKING_URI`` and ``PREFECT_API_URL`` set in ``os.environ`` for the test.
- ``mlflow_auth_server``: a second MLflow server with ``--app-name basic-auth``; its admin
  password is generated per session and never written to the repository.
- ``locked_services``: dask, mlflow and prefect locked as beyond loopback (``auth=True``: MLflow basic
  auth + pipeline user, Prefect auth string, Dask TLS) on a PostgreSQL backend, in a state directory of
  their own; the exported environment is ``locked_services.env()``.
- ``postgres_state_dir`` (function scope): an empty state directory the ``postgres`` system user can
  reach (pytest's own temporary directories are 0700 under /tmp/pytest-of-root); whatever a test left
  running in it is stopped at the end.

Tests that use them should be marked ``@pytest.mark.services``. Services are shared by the
whole session (one pool per process, even if this module is imported by several conftests),
so a test must not stop them; ``app.services`` lets a test that kills a process on purpose
start its own set under ``tmp_path``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.services import SERVICES, ServiceSet, start_services, stop_services

__all__ = [
    "MlflowAuthServer",
    "dask_cluster_address",
    "local_services",
    "local_services_env",
    "locked_services",
    "mlflow_auth_server",
    "mlflow_server_uri",
    "postgres_state_dir",
    "prefect_server_url",
    "sweepnet_service_pool",
]

N_DASK_WORKERS = 2


class _ServicePool:
    """Starts services on first request, in one state directory, and stops them all at the end."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir

    def ensure(self, names) -> ServiceSet:
        return start_services(names, state_dir=self.state_dir, dask_workers=N_DASK_WORKERS,
                              prefect_ui=False, timeout=240.0)

    def close(self) -> list[str]:
        return stop_services(self.state_dir)


_POOLS: dict[str, _ServicePool] = {}


@pytest.fixture(scope="session")
def sweepnet_service_pool(tmp_path_factory):
    """The session's lazily started services (one per test process); stopped at session end."""
    key = "default"
    if key not in _POOLS:
        _POOLS[key] = _ServicePool(tmp_path_factory.mktemp("sweepnet-services"))
    pool = _POOLS[key]
    yield pool
    if _POOLS.get(key) is pool:
        del _POOLS[key]
        pool.close()


@pytest.fixture(scope="session")
def dask_cluster_address(sweepnet_service_pool) -> str:
    """``tcp://127.0.0.1:PORT`` of a real scheduler with two 1-thread worker processes."""
    return sweepnet_service_pool.ensure(["dask"]).dask_address


@pytest.fixture(scope="session")
def mlflow_server_uri(sweepnet_service_pool) -> str:
    """``http://127.0.0.1:PORT`` of a real ``mlflow server`` with proxied artifacts."""
    return sweepnet_service_pool.ensure(["mlflow"]).mlflow_tracking_uri


@pytest.fixture(scope="session")
def prefect_server_url(sweepnet_service_pool) -> str:
    """``http://127.0.0.1:PORT/api`` of a real Prefect server with a process worker polling."""
    return sweepnet_service_pool.ensure(["prefect"]).prefect_api_url


@pytest.fixture(scope="session")
def local_services(sweepnet_service_pool) -> ServiceSet:
    """Dask, MLflow and Prefect together (those not yet running are started concurrently)."""
    return sweepnet_service_pool.ensure(SERVICES)


@pytest.fixture
def local_services_env(local_services, monkeypatch) -> ServiceSet:
    """``local_services`` with its client environment variables exported for one test."""
    for key, value in local_services.env().items():
        monkeypatch.setenv(key, value)
    return local_services


@dataclass(frozen=True)
class MlflowAuthServer:
    """A running ``mlflow server --app-name basic-auth`` and its admin credentials."""

    uri: str
    username: str
    password: str
    state_dir: Path

    def env(self) -> dict[str, str]:
        """Client environment: tracking URI plus ``MLFLOW_TRACKING_USERNAME/PASSWORD``."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": self.username,
                "MLFLOW_TRACKING_PASSWORD": self.password}


@pytest.fixture(scope="session")
def mlflow_auth_server(tmp_path_factory):
    """An MLflow server with basic auth; skipped when the ``mlflow[auth]`` extra is missing."""
    pytest.importorskip("flask_wtf", reason="needs the auth extra: pip install 'mlflow[auth]==3.17.2'")
    state_dir = tmp_path_factory.mktemp("mlflow-auth")
    secrets_env = {"MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
                   "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(18),
                   "MLFLOW_AUTH_ADMIN_USERNAME": "sweepnet-admin"}
    saved = {k: os.environ.get(k) for k in secrets_env}
    os.environ.update(secrets_env)  # start_services reads the secrets from the environment
    try:
        svc = start_services(["mlflow"], state_dir=state_dir, mlflow_auth=True, timeout=240.0)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield MlflowAuthServer(svc.mlflow_tracking_uri, secrets_env["MLFLOW_AUTH_ADMIN_USERNAME"],
                           secrets_env["MLFLOW_AUTH_ADMIN_PASSWORD"], state_dir)
    stop_services(state_dir)


def _traversable_dir(prefix: str) -> Path:
    """A new directory under the system temp dir that other users may traverse (PostgreSQL runs as one)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture
def postgres_state_dir():
    """``<tmp>/state``: not yet created, reachable by the ``postgres`` user; stopped and removed afterwards."""
    base = _traversable_dir("sweepnet-pg-")
    yield base / "state"
    stop_services(base / "state")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def locked_services():
    """Dask (TLS), MLflow (basic auth, pipeline user) and Prefect (auth string) on PostgreSQL, on loopback."""
    pytest.importorskip("flask_wtf", reason="needs the auth extra: pip install 'mlflow[auth]==3.17.2'")
    base = _traversable_dir("sweepnet-locked-")
    state = base / "state"
    try:
        svc = start_services(SERVICES, state_dir=state, dask_workers=N_DASK_WORKERS, backend="postgres",
                             auth=True, prefect_ui=False, timeout=240.0)
        yield svc
    finally:
        stop_services(state)
        shutil.rmtree(base, ignore_errors=True)
