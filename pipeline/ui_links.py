"""Links into the MLflow UI that open on the training view, straight to a sweep's experiment or parent run.

MLflow 3.17 opens an experiment on its GenAI "Overview" of traces unless the URL carries
``?workflowType=machine_learning`` (then the "Model training" runs table); the experiment tag
``mlflow.experimentKind`` alone does not switch it (STACK.md, "MLflow UI view"). Every link sweepnet prints
or publishes is built here.

A local sqlite store has no server of its own: its links point at ``sweepnet ui`` (127.0.0.1:5000 unless
another port is given); an HTTP tracking URI is its own UI, credentials removed.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

WORKFLOW = "workflowType=machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DEFAULT_UI = "http://127.0.0.1:5000"


def ui_base(tracking_uri: str | None, port: int | None = None) -> str:
    """The UI's root for ``tracking_uri``: the server itself for ``http(s)://``, else ``sweepnet ui``'s address.

    Parameters
    ----------
    tracking_uri : str or None
        ``sqlite:///...``, ``postgresql://...``, ``http://user:pw@host:5000``, ...
    port : int, optional
        Port of ``sweepnet ui`` for a store without a server (default 5000).
    """
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        netloc = parts.netloc.rpartition("@")[2]  # never print credentials
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return f"http://127.0.0.1:{port}" if port else DEFAULT_UI


def experiment_url(base: str, experiment_id: str) -> str:
    """``BASE/#/experiments/ID?workflowType=machine_learning``: the experiment's runs table."""
    if not str(experiment_id):
        raise ValueError("experiment_id is empty; pass the id of the sweep's experiment "
                         "(TrackingContext.experiment_id)")
    return f"{base.rstrip('/')}/#/experiments/{quote(str(experiment_id))}?{WORKFLOW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """``BASE/#/experiments/ID/runs/RUN_ID?workflowType=machine_learning``: one run (e.g. the sweep's parent)."""
    if not run_id:
        raise ValueError("run_id is empty; pass the id of a run (TrackingContext.parent_run_id for the sweep)")
    return f"{base.rstrip('/')}/#/experiments/{quote(str(experiment_id))}/runs/{quote(run_id)}?{WORKFLOW}"


def sweep_links(tracking_uri: str, experiment_id: str, parent_run_id: str, port: int | None = None) -> dict[str, str]:
    """``{"experiment_url": ..., "parent_url": ...}`` for one sweep."""
    base = ui_base(tracking_uri, port)
    return {"experiment_url": experiment_url(base, experiment_id),
            "parent_url": run_url(base, experiment_id, parent_run_id)}


def store_links(tracking_uri: str, port: int | None = None) -> dict[str, str]:
    """``{experiment name: experiment_url}`` for every sweep experiment in the store (experiments with a parent
    run tagged ``sweepnet.kind = sweep``), oldest first."""
    from pipeline import tracking

    c = tracking.client(tracking_uri)
    base = ui_base(tracking_uri, port)
    out = {}
    for exp in sorted(c.search_experiments(), key=lambda e: e.creation_time or 0):
        if c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'", max_results=1):
            out[exp.name] = experiment_url(base, exp.experiment_id)
    return out
