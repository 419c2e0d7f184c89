"""The features flow: images and autoencoder once on the driver, shards on Dask, Parquet + classifier, MLflow.

Thin wiring over ``pipeline.features``: ``prepare_features`` loads and folds once, each shard of
``shard_slices`` is one ``extract-shard`` task (the unchanged ``extract_features`` on a Dask worker, given the
shard's images and the folded weights), the results are gathered in order and ``finish_features`` writes
``features.parquet`` and trains the classifier(s) exactly as ``run_features`` does; the run is one MLflow parent
(``open_features_run`` / ``log_features_run``). Run it through ``sweepnet features CONFIG --flow`` or::

    from flows.features import run_features_flow
    run_features_flow("examples/conv_pool.yaml", store_dir=".sweepnet")
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows import cluster
from flows.sweep import _io_error
from pipeline import tracking
from pipeline.features import (ConvSpec, FeaturesJob, extract_features, finish_features, log_features_run,
                               open_features_run, prepare_features, shard_images, shard_slices)


@task(name="prepare-features", cache_policy=NO_CACHE)
def prepare(config: str | dict[str, Any], overrides: dict[str, Any] | None) -> FeaturesJob:
    """Validate the config, load the labelled images and the autoencoder (training it if asked), fold it."""
    return prepare_features(config, overrides, progress=print)


@task(name="open-features-run", cache_policy=NO_CACHE)  # no retry: a retry could leave a second parent
def open_run(job: FeaturesJob, store_dir: str, tracking_uri: str | None) -> tracking.TrackingContext:
    """The experiment and a fresh parent run, created on the driver before the fan-out."""
    return open_features_run(job.cfg, store_dir, tracking_uri)


@task(name="extract-shard", cache_policy=NO_CACHE)
def extract_shard(images: np.ndarray, W: np.ndarray, b: np.ndarray, activation: str,
                  conv: ConvSpec) -> tuple[np.ndarray, int]:
    """Pooled features of one shard, shape (n_rows, n_features * pool cells), and the pid that computed them."""
    return extract_features(images, W, b, activation, conv), os.getpid()


@task(name="finish-features", cache_policy=NO_CACHE)
def finish(job: FeaturesJob, features: list[np.ndarray], started: float) -> dict:
    """``features.parquet``, the classifier(s) and ``metrics.json``, as the plain path writes them."""
    return finish_features(job, features, started, progress=print)


@task(name="log-features-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=_io_error)
def log_run(ctx: tracking.TrackingContext, summary: dict, fanout: dict) -> dict[str, str]:
    """Metrics, params and artifacts on the parent, closed FINISHED."""
    extra = {"shard_tasks": fanout["tasks"], "shard_workers": len(set(fanout["worker_pids"]))}
    return log_features_run(ctx, {**summary, "fanout": fanout}, extra)


@flow(name="sweepnet-features")
def features_flow(config: str | dict[str, Any], overrides: dict[str, Any] | None = None,
                  store_dir: str = ".sweepnet", tracking_uri: str | None = None) -> dict:
    """One features run with its shards fanned out; returns ``run_features``' summary plus ``fanout``
    (``tasks``, the ``worker_pids`` per shard) and ``tracking`` (parent run id, UI links)."""
    job = prepare(config, overrides)
    ctx = open_run(job, store_dir, tracking_uri)
    try:
        started = time.perf_counter()
        images = [shard_images(job, shard) for shard in shard_slices(job)]
        futures = extract_shard.map(images, unmapped(job.W), unmapped(job.b), unmapped(job.activation),
                                    unmapped(job.cfg.conv))
        results = [future.result() for future in futures]  # in shard order, whatever order they finished in
        summary = finish(job, [features for features, _ in results], started)
        fanout = {"tasks": len(results), "worker_pids": [pid for _, pid in results], "driver_pid": os.getpid()}
        links = log_run(ctx, summary, fanout)
    except BaseException:
        tracking.close_sweep(ctx, failed=True)
        raise
    return {**summary, "fanout": fanout,
            "tracking": {"tracking_uri": ctx.tracking_uri, "experiment_id": ctx.experiment_id,
                         "parent_run_id": ctx.parent_run_id, **links}}


def run_features_flow(config: str | dict[str, Any], overrides: dict[str, Any] | None = None,
                      store_dir: str = ".sweepnet", dask_address: str | None = None,
                      n_workers: int | None = None) -> dict:
    """Run ``features_flow`` on an existing scheduler (``dask_address`` or ``SWEEPNET_DASK_ADDRESS``) or on an
    embedded LocalCluster (closed afterwards); MLflow at ``MLFLOW_TRACKING_URI`` or ``STORE/mlflow.db``."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    with cluster.task_runner(dask_address, n_workers) as c:
        return features_flow.with_options(task_runner=c.task_runner)(
            config=config if isinstance(config, dict) else str(config), overrides=overrides,
            store_dir=str(store_dir), tracking_uri=tracking_uri)
