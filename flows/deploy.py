"""Scheduled sweeps: a cron deployment of ``flows.sweep:scheduled_sweep`` that runs on any work pool.

A deployment carries everything a worker needs and nothing of the deploying machine:

- ``spec``: the resolved sweep inline (the base config inlined, data sources resolved), not a path;
- ``store``: the tracking store as a URI (``sqlite:///...``, ``http://mlflow:5000``), userinfo stripped
  (credentials belong in the worker's ``MLFLOW_TRACKING_USERNAME/PASSWORD``); left out when the user named
  none, so the worker's own ``MLFLOW_TRACKING_URI`` decides;
- the entrypoint ``flows.sweep:scheduled_sweep``, imported from the installed ``sweepnet`` package on the
  worker: no checkout path, no pull steps.

The pool is named (``--pool``) and typed: ``process`` (a ``prefect worker`` on a host with sweepnet
installed), ``docker`` or ``kubernetes`` (the pool's base job template fixes the image, the command, and for
Kubernetes the namespace and service account; see ``infra/``). A missing pool is created with Prefect's
default template (``process``) or with the template file given.

Schedules never fire on Prefect's ephemeral API, so ``PREFECT_API_URL`` must point at ``prefect server``.
``serve=True``: this process serves the schedule itself (``flow.serve``); stopping it pauses the schedule.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flows.sweep import scheduled_sweep
from pipeline.uris import redact_uri
from pipeline.config import read_yaml
from pipeline.sweep.spec import base_config_dict, load_sweep

ENTRYPOINT = "flows.sweep:scheduled_sweep"
POOL_TYPES = ("process", "docker", "kubernetes")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")  # scheme of two or more letters: not a Windows drive


def inline_spec(spec: str | Path) -> dict[str, Any]:
    """The sweep file as one self-contained mapping: validated, ``base`` inlined, data sources resolved.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`pipeline.sweep.load_sweep` (a bad spec is refused before anything is registered).
    """
    sweep = load_sweep(spec)
    raw = sweep.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["base"] = base_config_dict(sweep)
    load_sweep(raw)  # what the worker will validate must validate here too
    return raw


def store_uri(store: str | Path | None) -> tuple[str | None, bool]:
    """``(uri, stripped)``: the tracking URI a deployment names, and whether userinfo was removed from it.

    A URI is kept as given (minus ``user:password@``); a directory the user passed becomes
    ``sqlite:///DIR/mlflow.db`` (the layout ``sweepnet sweep --store DIR`` writes); ``None`` stays ``None``.
    """
    if store is None:
        return None, False
    text = str(store)
    if not _URI.match(text):
        return f"sqlite:///{Path(text).expanduser().resolve() / 'mlflow.db'}", False
    public = redact_uri(text)
    return public, public != text


def read_job_template(path: str | Path) -> dict[str, Any]:
    """A base job template from a YAML or JSON file (``job_configuration`` + ``variables``)."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not {"job_configuration", "variables"} <= set(data):
        raise ValueError(f"job template {str(path)!r} must be a mapping with job_configuration and variables, "
                         "like infra/prefect/docker-job-template.yaml")
    return data


def ensure_pool(pool: str, pool_type: str | None = None, job_template: str | Path | None = None) -> str:
    """The type of work pool ``pool``, created first if missing; refuses a pool of another type."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    if pool_type is not None and pool_type not in POOL_TYPES:
        raise ValueError(f"pool type {pool_type!r} is not one of {', '.join(POOL_TYPES)}")
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool).type
        except ObjectNotFound:
            existing = None
        if existing is not None:
            if pool_type not in (None, existing):
                raise ValueError(f"work pool {pool!r} exists with type {existing!r}, not {pool_type!r}; "
                                 "pass its type or another --pool name")
            return existing
        kind = pool_type or "process"
        if job_template is not None:
            template = read_job_template(job_template)
        elif kind == "process":
            template = ProcessWorker.get_default_base_job_template()
        else:
            home = "infra/k8s/prefect" if kind == "kubernetes" else "infra/prefect"
            raise ValueError(f"work pool {pool!r} does not exist; create the {kind} pool with sweepnet's image "
                             f"template: --job-template {home}/{kind}-job-template.yaml")
        client.create_work_pool(WorkPoolCreate(name=pool, type=kind, base_job_template=template))
        return kind


def deploy(spec: str, cron: str, name: str | None = None, pool: str = "sweepnet-process",
           store: str | None = None, serve: bool = False, pool_type: str | None = None,
           job_template: str | None = None, n_workers: int | None = None) -> str:
    """Create (or update) the deployment and return its id (``serve``: serve it here, return its name).

    Parameters
    ----------
    spec : str
        Sweep file; stored inline as the ``spec`` parameter.
    cron : str
        Cron schedule, e.g. ``"0 3 * * *"``.
    store : str, optional
        Tracking URI or store directory (see :func:`store_uri`); default: the worker's own.
    pool, pool_type, job_template
        Work pool name, its expected type, and the base job template for a pool that does not exist yet.
    n_workers : int, optional
        Size of the embedded Dask cluster of each run (when the worker has no ``SWEEPNET_DASK_ADDRESS``).
    """
    params: dict[str, Any] = {"spec": inline_spec(spec)}
    uri, _ = store_uri(store)
    if uri is not None:
        params["store"] = uri
    if n_workers is not None:
        params["n_workers"] = n_workers
    json.dumps(params)  # parameters travel as JSON
    name = name or params["spec"]["name"]
    if serve:
        scheduled_sweep.serve(name=name, cron=cron, parameters=params)
        return name
    from prefect.deployments.runner import EntrypointType

    ensure_pool(pool, pool_type, job_template)
    deployment = scheduled_sweep.to_deployment(name=name, cron=cron, parameters=params, work_pool_name=pool,
                                               entrypoint_type=EntrypointType.MODULE_PATH)
    deployment.entrypoint = ENTRYPOINT  # the installed package's module, never a file of this checkout
    return str(deployment.apply(work_pool_name=pool))
