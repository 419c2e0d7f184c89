"""pipeline.features.tracked: a features run as an MLflow parent, on a real local sqlite store (no mocks)."""

from __future__ import annotations

import csv
import json

from pipeline import tracking
from pipeline.features import features_metrics, load_features_config, log_features_run, open_features_run
from pipeline.features.tracked import TAG_FEATURES, write_confusion_csv

from features_helpers import features_config

SUMMARY = {"name": "t", "out": "out", "n_train": 4, "n_test": 3, "extract_seconds": 0.5,
           "images_per_second": 14.0, "classes": [0, 1], "class_names": ["zero", "one"],
           "features": {"train_accuracy": 1.0, "test_accuracy": 2 / 3, "n_inputs": 8, "fit_seconds": 0.1,
                        "confusion_matrix": [[1, 1], [0, 1]]},
           "raw_pixels": {"train_accuracy": 0.75, "test_accuracy": 1 / 3, "n_inputs": 64, "fit_seconds": 0.2,
                          "confusion_matrix": [[0, 2], [0, 1]]}}


def test_features_metrics_names_pooled_and_raw_and_leaves_the_summary_alone():
    before = json.dumps(SUMMARY, sort_keys=True)
    metrics = features_metrics(SUMMARY)
    assert metrics["features_test_accuracy"] == 2 / 3 and metrics["raw_test_accuracy"] == 1 / 3
    assert metrics["features_n_inputs"] == 8 and metrics["raw_n_inputs"] == 64 and metrics["n_test"] == 3
    assert not any(k.startswith("raw_") for k in features_metrics({**SUMMARY, "raw_pixels": None}))
    assert json.dumps(SUMMARY, sort_keys=True) == before


def test_confusion_csv_rows_are_true_classes_by_name(tmp_path):
    rows = list(csv.reader(open(write_confusion_csv(tmp_path / "cm.csv", SUMMARY))))
    assert rows == [["true \\ predicted", "zero", "one"], ["zero", "1", "1"], ["one", "0", "1"]]


def test_each_run_is_a_fresh_finished_parent_with_params_metrics_and_artifacts(tmp_path):
    cfg = load_features_config(features_config(tmp_path))
    first = open_features_run(cfg, tmp_path / "store")
    links = log_features_run(first, SUMMARY, {"shard_tasks": 6})
    second = open_features_run(cfg, tmp_path / "store")
    assert second.experiment_id == first.experiment_id and second.parent_run_id != first.parent_run_id
    c = tracking.client(first.tracking_uri)
    run = c.get_run(first.parent_run_id)
    assert c.get_experiment(first.experiment_id).name == "t-features"
    assert run.info.status == "FINISHED" and c.get_run(second.parent_run_id).info.status == "RUNNING"
    assert run.data.metrics["features_test_accuracy"] == 2 / 3 and run.data.metrics["shard_tasks"] == 6
    assert run.data.params["conv.pool"] == "2" and run.data.params["name"] == "t"
    assert run.data.tags[TAG_FEATURES] == c.get_run(second.parent_run_id).data.tags[TAG_FEATURES]
    assert {a.path for a in c.list_artifacts(first.parent_run_id)} == {"metrics.json", "confusion_matrix.csv"}
    assert json.loads(tracking.read_artifact_text(first, first.parent_run_id, "metrics.json")) == SUMMARY
    assert first.parent_run_id in links["parent_url"]
