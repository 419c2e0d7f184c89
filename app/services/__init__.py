"""Local service supervision: Dask scheduler + workers, MLflow server, Prefect server + worker, on loopback.

``start_services`` starts the requested services as detached processes under a state directory
(default ``.sweepnet/services/``) and returns once each answers a real request; ``stop_services`` stops
what that directory records, by PID. See :mod:`app.services.supervisor`.
"""

from app.services.procs import ServiceError, free_port, http_status, read_state
from app.services.starters import DEFAULT_POOL, LOOPBACK, start_dask, start_mlflow, start_prefect
from app.services.supervisor import (
    DEFAULT_STATE_DIR,
    SERVICES,
    ServiceSet,
    load_service_set,
    service_status,
    start_services,
    stop_services,
)

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_STATE_DIR",
    "LOOPBACK",
    "SERVICES",
    "ServiceError",
    "ServiceSet",
    "free_port",
    "http_status",
    "load_service_set",
    "read_state",
    "service_status",
    "start_dask",
    "start_mlflow",
    "start_prefect",
    "start_services",
    "stop_services",
]
