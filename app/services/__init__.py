"""Local service supervision: Dask scheduler + workers, MLflow server, Prefect server + worker, PostgreSQL.

``start_services`` starts the requested services as detached processes under a state directory
(default ``.sweepnet/services/``) and returns once each answers a real request; ``stop_services`` stops
what that directory records, by PID. Outside loopback (or when asked) they are locked: MLflow basic auth
with a non-admin pipeline user, a Prefect API auth string, Dask TLS. See :mod:`app.services.supervisor`.
"""

from app.services.credentials import dask_tls_env
from app.services.keep import (idle_seconds, keep_enabled, kept_note, kept_services, save_prefect_template,
                                seed_prefect_db)
from app.services.mlflow_server import pipeline_credentials, start_mlflow
from app.services.postgres import start_postgres
from app.services.procs import ServiceError, free_port, http_status, read_state
from app.services.starters import (
    DEFAULT_POOL,
    LOOPBACK,
    PIPELINE_USER,
    dask_security,
    other_hosts_note,
    prefect_auth_string,
    start_dask,
    start_prefect,
)
from app.services.supervisor import (
    ALL_SERVICES,
    DEFAULT_STATE_DIR,
    SERVICES,
    ServiceSet,
    load_service_set,
    service_status,
    start_services,
    stop_services,
)

__all__ = [
    "ALL_SERVICES",
    "DEFAULT_POOL",
    "DEFAULT_STATE_DIR",
    "LOOPBACK",
    "PIPELINE_USER",
    "SERVICES",
    "ServiceError",
    "ServiceSet",
    "dask_security",
    "dask_tls_env",
    "free_port",
    "http_status",
    "idle_seconds",
    "keep_enabled",
    "kept_note",
    "kept_services",
    "load_service_set",
    "other_hosts_note",
    "pipeline_credentials",
    "prefect_auth_string",
    "read_state",
    "save_prefect_template",
    "seed_prefect_db",
    "service_status",
    "start_dask",
    "start_mlflow",
    "start_postgres",
    "start_prefect",
    "start_services",
    "stop_services",
]
