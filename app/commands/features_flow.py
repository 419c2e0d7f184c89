"""``sweepnet features CONFIG --flow``: a features run as a Prefect flow, its shards on Dask, tracked in MLflow.

The flow is ``flows.features.features_flow`` (images and autoencoder once on the driver, one Dask task per image
shard, ``features.parquet`` and the classifier(s) as the plain command writes them), run against one Prefect API
(``app.sweeps.prefect_api``: ``PREFECT_API_URL``, else a local server for this command) on an existing Dask
scheduler (``--dask-address`` / ``SWEEPNET_DASK_ADDRESS``) or an embedded LocalCluster. The run is one MLflow
parent in experiment ``NAME-features`` (``MLFLOW_TRACKING_URI``, else ``STORE/mlflow.db``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_features_flow(config: str, overrides: dict[str, Any], store: Path, dask_address: str | None = None,
                      n_workers: int | None = None, verbose: bool = False) -> dict:
    """Validate the config, then run the flow; returns its summary (``run_features``' plus ``fanout`` and
    ``tracking``). A bad config or override raises before any service starts."""
    from app.sweeps import prefect_api
    from pipeline import tracking
    from pipeline.features import load_features_config

    load_features_config(config, overrides)  # refuse a bad config before a Prefect server or cluster starts
    tracking.credentials_to_env()  # no user:password@ in a flow parameter or a LocalCluster's environment
    store.mkdir(parents=True, exist_ok=True)
    with prefect_api(store, verbose):
        from flows import run_features_flow as run_flow

        return run_flow(config, overrides, store_dir=str(store), dask_address=dask_address, n_workers=n_workers)


def tracking_lines(summary: dict) -> str:
    """Where the run landed: the parent run in the MLflow UI and the shards' fan-out."""
    fanout, where = summary["fanout"], summary["tracking"]
    workers = len(set(fanout["worker_pids"]))
    return (f"{fanout['tasks']} shards ran as Dask tasks on {workers} worker process(es)\n"
            f"MLflow parent run {where['parent_run_id']}: {where['parent_url']}")
