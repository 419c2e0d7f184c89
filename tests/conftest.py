"""Shared test configuration: the real-service fixtures (dask scheduler/workers, mlflow server, prefect server)."""

pytest_plugins = ["tests.services"]
