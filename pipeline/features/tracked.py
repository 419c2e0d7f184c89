"""A features run in MLflow, laid out like a sweep's parent: one parent run per run of a features config.

Experiment ``NAME-features``; the parent holds the config as params (dotted keys), the pooled-feature and
raw-pixel accuracies as metrics, and ``metrics.json`` plus ``confusion_matrix.csv`` as artifacts. Every MLflow
call goes through :mod:`pipeline.tracking`; this module only decides what is logged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import uuid
from pathlib import Path

from pipeline import tracking, ui_links
from pipeline.features.config import FeaturesConfig

TAG_FEATURES = "sweepnet.features_config"


def open_features_run(cfg: FeaturesConfig, store_dir: str | Path, tracking_uri: str | None = None
                      ) -> tracking.TrackingContext:
    """Create the experiment (if new) and a fresh parent run for this run of ``cfg``; the driver calls it
    before any fan-out. ``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI``, else ``STORE/mlflow.db``."""
    store = Path(store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or tracking.default_tracking_uri(store)
    tracking.check_reachable(uri)
    params = cfg.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    local = uri.startswith(("sqlite", "file"))
    # a new parent each run: a features run has nothing to resume, so a rerun must not reopen the last one
    ctx = tracking.open_sweep(uri, f"{cfg.name}-features", cfg.name, f"{digest}-{uuid.uuid4().hex[:8]}", params,
                              artifact_root=store / "artifacts" if local else None)
    # kind stays "sweep" (set by open_sweep): the UI links list experiments that have such a parent
    tracking.tag_run(ctx, ctx.parent_run_id, {TAG_FEATURES: digest})
    return ctx


def features_metrics(summary: dict) -> dict[str, float]:
    """The parent's metrics: accuracies of the pooled features (``features_*``) and raw pixels (``raw_*``)."""
    out = {"n_train": summary["n_train"], "n_test": summary["n_test"],
           "extract_seconds": summary["extract_seconds"], "images_per_second": summary["images_per_second"]}
    for prefix, key in (("features", "features"), ("raw", "raw_pixels")):
        if summary.get(key):
            for name in ("train_accuracy", "test_accuracy", "n_inputs", "fit_seconds"):
                out[f"{prefix}_{name}"] = summary[key][name]
    return out


def write_confusion_csv(path: Path, summary: dict) -> Path:
    """The pooled features' test confusion matrix: rows true class, columns predicted, named."""
    names = [str(n) for n in (summary.get("class_names") or summary["classes"])]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *names])
        for name, row in zip(names, summary["features"]["confusion_matrix"]):
            writer.writerow([name, *row])
    return path


def log_features_run(ctx: tracking.TrackingContext, summary: dict, extra_metrics: dict | None = None,
                     tags: dict | None = None) -> dict[str, str]:
    """Metrics (:func:`features_metrics` plus ``extra_metrics``), tags and artifacts (``summary`` as
    ``metrics.json``, the confusion matrix) on the parent, which is then closed FINISHED; returns its UI links."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2))
        write_confusion_csv(folder / "confusion_matrix.csv", summary)
        metrics = {**features_metrics(summary), **(extra_metrics or {})}
        tracking.log_parent(ctx, metrics, dict(tags or {}), folder)
    tracking.close_sweep(ctx, failed=False)
    return ui_links.sweep_links(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id)
