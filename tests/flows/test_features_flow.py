"""flows.features through ``sweepnet features CONFIG --flow`` with real processes: its own Prefect server, an
embedded LocalCluster of two workers, MLflow on sqlite. No mocks: the shards are the unchanged
``pipeline.features.extract_features`` on Dask workers, compared bit for bit with the plain ``run_features``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from pipeline import tracking
from pipeline.features import run_features
from tests.pipeline.features_helpers import features_config

ROOT = Path(__file__).resolve().parents[2]
N_SHARDS = 3 + 3  # 150 train and 150 test images in shards of 64 rows


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _features(cwd: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, int]:
    proc = subprocess.Popen([sys.executable, "-m", "app", "features", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def test_features_flow_equals_the_plain_run_with_shards_on_dask_and_an_mlflow_parent(tmp_path):
    plain = run_features(features_config(tmp_path / "plain"), progress=lambda s: None)
    config = tmp_path / "features.yaml"
    config.write_text(yaml.safe_dump(features_config(tmp_path / "flow")))
    store = tmp_path / "store"
    proc, pid = _features(tmp_path, str(config), "--flow", "--store", str(store), "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{N_SHARDS} shards ran as Dask tasks" in proc.stdout

    # the same Parquet (values, row groups, metadata) and the same classifiers as the plain path
    flow_pq, plain_pq = tmp_path / "flow" / "out" / "features.parquet", tmp_path / "plain" / "out" / "features.parquet"
    assert pq.read_table(flow_pq).equals(pq.read_table(plain_pq), check_metadata=True)
    assert pq.ParquetFile(flow_pq).num_row_groups == N_SHARDS
    local = json.loads((tmp_path / "flow" / "out" / "metrics.json").read_text())
    for part in ("features", "raw_pixels"):
        for key in ("train_accuracy", "test_accuracy", "n_inputs", "confusion_matrix"):
            assert local[part][key] == plain[part][key], (part, key)

    # one MLflow parent, FINISHED, with the accuracies, the config as params and the artifacts
    c = tracking.client(f"sqlite:///{store / 'mlflow.db'}")
    exp = c.get_experiment_by_name("t-features")
    [parent] = c.search_runs([exp.experiment_id])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["features_test_accuracy"] == plain["features"]["test_accuracy"]
    assert parent.data.metrics["raw_test_accuracy"] == plain["raw_pixels"]["test_accuracy"]
    assert parent.data.metrics["shard_tasks"] == N_SHARDS
    assert parent.data.params["conv.pool"] == "2" and parent.data.params["shard_rows"] == "64"
    assert {a.path for a in c.list_artifacts(parent.info.run_id)} == {"metrics.json", "confusion_matrix.csv"}
    ctx = tracking.TrackingContext(f"sqlite:///{store / 'mlflow.db'}", exp.experiment_id, parent.info.run_id)
    logged = json.loads(tracking.read_artifact_text(ctx, parent.info.run_id, "metrics.json"))
    assert logged["features"]["confusion_matrix"] == plain["features"]["confusion_matrix"]

    # each shard was its own task, computed in a Dask worker process, not in the command's own process
    fanout = logged["fanout"]
    assert fanout["tasks"] == N_SHARDS == len(fanout["worker_pids"])
    assert fanout["driver_pid"] == pid and pid not in fanout["worker_pids"]
    assert parent.data.metrics["shard_workers"] == len(set(fanout["worker_pids"])) >= 1


def test_features_flow_refuses_a_bad_override_before_starting_services(tmp_path):
    config = tmp_path / "features.yaml"
    config.write_text(yaml.safe_dump(features_config(tmp_path)))
    store = tmp_path / "store"
    proc, _ = _features(tmp_path, str(config), "--flow", "--store", str(store), "--set", "conv.pool=0",
                        timeout=120)
    assert proc.returncode == 2
    assert "conv.pool" in proc.stderr and "starting a local Prefect server" not in proc.stderr
    assert not (store / "mlflow.db").exists()
