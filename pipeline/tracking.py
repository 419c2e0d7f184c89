"""The one MLflow adapter: a parent run per sweep, a child run per trial (or per configuration).

Every MLflow call of the project goes through this module. Rules it keeps (see STACK.md):

* The driver creates the store (sqlite migrations), the experiment and the parent run *before* any
  fan-out; workers only open children with ``mlflow.parentRunId`` set (the UI nests on that tag).
* Params are logged once, as one batch; per-epoch metrics go in ``log_batch`` calls with ``step``.
* Idempotency: a child carries ``sweepnet.trial_key``. Before a trial trains (or a child is created) and again right before
  it is marked FINISHED, the key is looked up; a trial with a FINISHED child is never logged again.
* Stale RUNNING children (their process was killed) are marked KILLED by :func:`reconcile_stale`.
* No "View run" links printed (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``): over HTTP each is a ``get_run`` per child.
* Workers log through their own ``MLFLOW_TRACKING_URI`` when they have one (:func:`uri_for`): the driver's
  address for the server may mean nothing on a worker host. Experiment and parent ids come from the driver.
* ``user:password@`` in a URI never reaches a param, a tag or the context (:func:`redact_text`); credentials
  found in a tracking URI move to ``MLFLOW_TRACKING_USERNAME/PASSWORD`` (:func:`credentials_to_env`).
* A local sqlite store is switched to write-ahead logging when the sweep opens it: readers no longer
  block the writer, and two workers logging children at once measured 37-52 ms a child instead of
  60-80 ms (CPU ~31-39 ms either way).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

from pipeline.uris import credentials_to_env, redact_text, redact_uri  # noqa: F401  (tracking.* API)
from pipeline.ui_links import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

TAG_SWEEP = "sweepnet.sweep_key"
TAG_KEY = "sweepnet.trial_key"
TAG_CONFIG = "sweepnet.config_key"
TAG_KIND = "sweepnet.kind"
TAG_ERROR = "sweepnet.error"
PARENT = "mlflow.parentRunId"
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}
_CLIENTS: dict[str, Any] = {}


@dataclass(frozen=True)
class TrackingContext:
    """What a worker needs to log children of one sweep (picklable, plain strings, no credentials).

    Attributes
    ----------
    tracking_uri : str
        The driver's tracking URI, userinfo stripped.
    driver_env_uri : str or None
        The driver's own ``MLFLOW_TRACKING_URI`` when it opened the sweep: a worker whose variable is the same
        inherited it (a LocalCluster) and keeps ``tracking_uri``; any other value is the worker's own.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    driver_env_uri: str | None = None


def uri_for(ctx: TrackingContext) -> str:
    """The tracking URI this process logs ``ctx``'s runs through: its own ``MLFLOW_TRACKING_URI`` when it has one
    that it did not inherit from the driver, else the driver's."""
    own = os.environ.get("MLFLOW_TRACKING_URI")
    if own and redact_uri(own) != ctx.driver_env_uri:
        return own
    return ctx.tracking_uri


TAG_METRICS = "sweepnet.metric_keys"


def check_reachable(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail in seconds when an HTTP tracking server does not answer ``/health`` (sqlite/file: no-op).

    MLflow's client retries with backoff for ~4 minutes (measured: 252 s) before giving up.
    """
    import urllib.error
    import urllib.request

    if not tracking_uri.startswith(("http://", "https://")):
        return
    tracking_uri = redact_uri(tracking_uri)  # /health needs no credentials, and messages must not show them
    try:
        urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout).close()
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(
            f"the MLflow tracking server at {tracking_uri} does not answer ({err}); start it "
            "(`sweepnet services up --only mlflow`) or unset MLFLOW_TRACKING_URI for a local sqlite store") from None


def default_tracking_uri(store_dir: str | Path = ".sweepnet") -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite file ``<store_dir>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(store_dir).resolve() / 'mlflow.db'}"


def client(tracking_uri: str):
    """A cached ``MlflowClient`` for ``tracking_uri`` (one per process)."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # else a get_run per terminate, for a link
    if tracking_uri not in _CLIENTS:
        from mlflow import MlflowClient

        _CLIENTS[tracking_uri] = MlflowClient(tracking_uri=tracking_uri)
    return _CLIENTS[tracking_uri]


def open_sweep(
    tracking_uri: str,
    experiment: str,
    sweep_name: str,
    sweep_key: str,
    params: dict[str, Any],
    artifact_root: str | Path | None = None,
) -> TrackingContext:
    """Create (or reopen, on a rerun) the experiment and the sweep's parent run.

    Call this in the driver before fan-out: the first client to touch a new sqlite file runs the
    schema migrations, and two processes doing it at once fail.

    Parameters
    ----------
    sweep_key : str
        Hash of the sweep spec + data; a rerun of the same sweep reopens the same parent.
    artifact_root : path, optional
        Artifact location for a *new* experiment on a local store (ignored if it exists).
    """
    if redact_uri(tracking_uri) != tracking_uri:  # the context travels to workers and into summaries: no credentials
        env = {"MLFLOW_TRACKING_URI": tracking_uri}
        credentials_to_env(env)
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            if key in env:
                os.environ.setdefault(key, env[key])
        tracking_uri = env["MLFLOW_TRACKING_URI"]
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)  # creates (and migrates) a new sqlite store first
    use_wal(tracking_uri)
    if exp is None:
        location = Path(artifact_root).resolve().as_uri() if artifact_root else None
        exp_id = c.create_experiment(experiment, artifact_location=location,
                                     tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    else:
        exp_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp_id)
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # experiments made before the tag existed
            c.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    found = c.search_runs([exp_id], filter_string=f"tags.`{TAG_SWEEP}` = '{sweep_key}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        c.update_run(run_id, status="RUNNING")
    else:
        tags = {TAG_SWEEP: sweep_key, TAG_KIND: "sweep", "mlflow.runName": sweep_name}
        run_id = c.create_run(exp_id, run_name=sweep_name, tags=tags).info.run_id
        _log_params_and_metrics(c, run_id, params, [])
    driver_env = os.environ.get("MLFLOW_TRACKING_URI")
    return TrackingContext(tracking_uri, exp_id, run_id, redact_uri(driver_env) if driver_env else None)


def use_wal(tracking_uri: str) -> bool:
    """Put a local sqlite store in write-ahead-log mode (a persistent property of the file); ``False`` for
    other stores. Call after the store exists and before workers write to it."""
    if not tracking_uri.startswith("sqlite:///"):
        return False
    con = sqlite3.connect(tracking_uri[len("sqlite:///"):].split("?")[0], timeout=30)
    try:
        return con.execute("pragma journal_mode=wal").fetchone()[0].lower() == "wal"
    finally:
        con.close()


def _log_params_and_metrics(c, run_id: str, params: dict[str, Any], metrics: list) -> None:
    """Params (flattened to dotted keys) and metrics in as few ``log_batch`` calls as MLflow's limits allow
    (one for a typical trial: each call is a SQLite transaction)."""
    from mlflow.entities import Param

    flat = [Param(k, _short(v, 6000)) for k, v in flatten(params).items()]
    while flat or metrics:
        ps, flat = flat[: _BATCH["params"]], flat[_BATCH["params"] :]
        room = _BATCH["metrics"] - len(ps)  # a batch holds at most 1000 entities in all
        ms, metrics = metrics[:room], metrics[room:]
        c.log_batch(run_id, metrics=ms, params=ps)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"l1": 0}}`` -> ``{"model.l1": 0}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _short(value: Any, limit: int) -> str:
    """Every param and tag value goes through here: userinfo stripped, cut to MLflow's ``limit``."""
    text = redact_text(str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def children(ctx: TrackingContext, status: str | None = None, key: str | None = None) -> list:
    """Child runs of the sweep's parent, optionally filtered by status and trial key."""
    c = client(uri_for(ctx))
    query = f"tags.`{PARENT}` = '{ctx.parent_run_id}'"
    if status:
        query += f" and attributes.status = '{status}'"
    if key:
        query += f" and tags.`{TAG_KEY}` = '{key}'"
    runs, token = [], None
    while True:
        page = c.search_runs([ctx.experiment_id], filter_string=query, max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def is_finished(ctx: TrackingContext, key: str) -> bool:
    """Whether trial (or configuration) ``key`` already has a FINISHED child."""
    return bool(children(ctx, status="FINISHED", key=key))


def finished_keys(ctx: TrackingContext) -> set[str]:
    """Trial keys that already have a FINISHED child."""
    return {r.data.tags.get(TAG_KEY) for r in children(ctx, status="FINISHED")} - {None}


def reconcile_stale(ctx: TrackingContext) -> int:
    """Mark every RUNNING child of the sweep KILLED (its process is gone); return how many."""
    c = client(uri_for(ctx))
    stale = children(ctx, status="RUNNING")
    for run in stale:
        c.set_tag(run.info.run_id, TAG_ERROR, "stale RUNNING child: its process died; marked KILLED")
        c.set_terminated(run.info.run_id, status="KILLED")
    return len(stale)


def _metrics(history: list[dict], final: dict[str, float], ts: int, curve_keys=None) -> list:
    """Per-epoch values of ``curve_keys`` (all history keys when ``None``) and the final metrics."""
    from mlflow.entities import Metric

    out = []
    last = history[-1] if history else {}
    for i, row in enumerate(history):
        step = int(row.get("epoch", i + 1))
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and (curve_keys is None or k in curve_keys):
                out.append(Metric(k, float(v), ts, step))
    step = int(last.get("epoch", len(history)))
    for k, v in final.items():
        logged = curve_keys is None or k in curve_keys
        if isinstance(v, (int, float)) and not (logged and last.get(k) == v):
            out.append(Metric(k, float(v), ts + 1, step))
    return out


def log_child(
    ctx: TrackingContext,
    key: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, Any],
    history: Iterable[dict],
    metrics: dict[str, float],
    artifacts: str | Path | None = None,
    status: str = "FINISHED",
    curve_keys: Collection[str] | None = None,
    check_first: bool = True,
    datasets: list | None = None,
    before_close: Callable[[str], None] | None = None,
    check_last: bool = True,
) -> str | None:
    """Log one finished (or failed) child run; return its id, or ``None`` if the key is already done.

    The key is looked up right before the child is created and again right before it is closed, so a trial
    re-executed by Dask (its first result lived on a dead worker) never gets a second FINISHED child;
    ``check_first=False`` skips the first lookup when the caller has just made it, ``check_last=False`` the second,
    for a caller that alone logs ``key`` (the driver's configuration children). ``curve_keys`` limits the per-epoch
    metric series to those history keys (``None``: every key; sqlite: ~0.09 ms per value). ``datasets``:
    ``DatasetInput`` s (one ``log_inputs`` call); ``before_close(run_id)`` runs after the artifacts and before the
    run is closed (``pipeline.model_logging`` logs the MLflow model there).
    """
    c = client(uri_for(ctx))
    if check_first and is_finished(ctx, key):
        return None
    all_tags = {PARENT: ctx.parent_run_id, TAG_KEY: key, "mlflow.runName": run_name}
    all_tags.update({k: _short(v, 5000) for k, v in tags.items()})
    all_tags.setdefault(TAG_METRICS, _short(",".join(sorted(metrics)), 5000))  # final metrics, for resumed summaries
    run_id = c.create_run(ctx.experiment_id, run_name=run_name, tags=all_tags).info.run_id
    try:
        _log_params_and_metrics(c, run_id, params, _metrics(list(history), metrics, int(time.time() * 1000),
                                                            curve_keys))
        if datasets:
            _log_inputs(c, run_id, list(datasets))
        if artifacts is not None:
            c.log_artifacts(run_id, str(artifacts))
        if before_close is not None:
            before_close(run_id)
    except BaseException:
        c.set_terminated(run_id, status="FAILED")
        raise
    if check_last and status == "FINISHED" and any(r.info.run_id != run_id for r in children(ctx, "FINISHED", key)):
        c.delete_run(run_id)  # lost a race with a duplicate execution of the same trial
        return None
    c.set_terminated(run_id, status=status)
    return run_id


def _log_inputs(c, run_id: str, datasets: list, attempts: int = 3) -> None:
    """``log_inputs``, again when two children of a new sweep inserted the same dataset row at once (one gets the
    store's unique-constraint error, seen on sqlite under load): the row exists on the next try."""
    for attempt in range(attempts):
        try:
            c.log_inputs(run_id, datasets=datasets)
            return
        except Exception as err:
            text = str(err)
            if attempt == attempts - 1 or not ("UNIQUE constraint" in text or "duplicate key" in text):
                raise
            time.sleep(0.2 * (attempt + 1))


def log_failure(ctx: TrackingContext, key: str, run_name: str, params: dict, tags: dict, error: str,
                datasets: list | None = None) -> str:
    """A FAILED child carrying the error text as a tag and as ``error.txt``."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "error.txt").write_text(redact_text(error))
        run_id = log_child(
            ctx, key, run_name, params, {**tags, TAG_ERROR: error[-5000:]}, [], {}, tmp, status="FAILED",
            datasets=datasets,
        )
    return run_id or ""


def log_parent(
    ctx: TrackingContext, metrics: dict[str, float], tags: dict[str, Any], artifacts: str | Path | None
) -> None:
    """Summary metrics, tags (e.g. the best child) and artifacts on the parent run."""
    from mlflow.entities import Metric, RunTag

    c = client(uri_for(ctx))
    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, 0) for k, v in metrics.items()]
    ts_tags = [RunTag(k, _short(v, 5000)) for k, v in tags.items()]
    for i in range(0, max(len(ms), len(ts_tags)), 100):
        c.log_batch(ctx.parent_run_id, metrics=ms[i : i + 100], tags=ts_tags[i : i + 100])
    if artifacts is not None:
        c.log_artifacts(ctx.parent_run_id, str(artifacts))


def close_sweep(ctx: TrackingContext, failed: bool) -> None:
    """Mark the parent FINISHED (or FAILED when the sweep itself broke)."""
    client(uri_for(ctx)).set_terminated(ctx.parent_run_id, status="FAILED" if failed else "FINISHED")


def run_status(ctx: TrackingContext, run_id: str) -> str:
    """Status string of a run (``FINISHED``, ``FAILED``, ``KILLED``, ``RUNNING``)."""
    return client(uri_for(ctx)).get_run(run_id).info.status


def tag_run(ctx: TrackingContext, run_id: str, tags: dict[str, Any]) -> None:
    """Set tags on one run of the sweep (e.g. ``sweepnet.best`` on the best child)."""
    from mlflow.entities import RunTag

    client(uri_for(ctx)).log_batch(run_id, tags=[RunTag(k, _short(v, 5000)) for k, v in tags.items()])


def read_artifact_text(ctx: TrackingContext, run_id: str, path: str) -> str:
    """Text of one artifact of a run (downloaded to a temporary folder; works for proxied stores)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client(uri_for(ctx)).download_artifacts(run_id, path, tmp)
        return Path(local).read_text()


TAG_STARTED = "sweepnet.started."  # + trial key, on the parent while that trial trains


def started_trials(ctx: TrackingContext) -> dict[str, dict]:
    """Trial key -> what :func:`mark_started` recorded, for trials started and never logged: the worker
    training them died (a chunk Dask re-runs reads this to tell which trial killed its worker)."""
    tags = client(uri_for(ctx)).get_run(ctx.parent_run_id).data.tags
    return {k[len(TAG_STARTED):]: json.loads(v) for k, v in tags.items() if k.startswith(TAG_STARTED)}


def mark_started(ctx: TrackingContext, key: str, note: dict | None) -> None:
    """Record on the parent that trial ``key`` is training (``note``: attempts, pid, memory seen), or
    clear the record (``note=None``) once its child is logged."""
    c = client(uri_for(ctx))
    if note is None:
        c.delete_tag(ctx.parent_run_id, TAG_STARTED + key)
    else:
        c.set_tag(ctx.parent_run_id, TAG_STARTED + key, json.dumps(note))
