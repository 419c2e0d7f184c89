"""Shared test configuration: the real-service fixtures (dask scheduler/workers, mlflow server, prefect server)."""

import os
import sys

import pytest

pytest_plugins = ["tests.services", "tests.cluster.fixtures"]

# `sweepnet sweep` keeps its local Prefect server and Dask workers for the next sweep by default; a test starts
# from nothing and leaves nothing running, so tests (and the sweeps they spawn, which inherit this) keep nothing
# unless they ask with --keep-services and stop what they kept by PID (tests/app/test_service_keep.py)
os.environ["SWEEPNET_KEEP_SERVICES"] = "0"


@pytest.fixture(autouse=True)
def _tracking_uri_does_not_leak():
    """``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in ``os.environ``: a test that sets it
    would point every Dask worker started later in the session at its store (workers log through their own
    URI), so it is put back after each test."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") == before:
        return
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(before)  # restores (or unsets) the variable and MLflow's global URI
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
