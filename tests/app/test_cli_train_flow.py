"""`sweepnet train CONFIG --flow`: one training run as a Prefect flow, tracked in MLflow as a sweep's trial."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.commands.train_flow import train_spec
from pipeline import tracking

ROOT = Path(__file__).resolve().parents[2]
XOR = ROOT / "examples" / "xor.yaml"


def test_the_config_becomes_a_one_trial_sweep_with_overrides_as_one_value_axes():
    spec = train_spec(str(XOR), [("model.epochs", 200), ("model.seed", 3)])
    assert spec == {"name": "xor-train", "base": str(XOR), "log_model": "all",
                    "space": {"model.epochs": [200]}, "seeds": [3]}
    assert train_spec(str(XOR), []) == {"name": "xor-train", "base": str(XOR), "log_model": "all"}


def test_out_and_flow_are_refused_together(tmp_path, capsys):
    assert main(["train", str(XOR), "--flow", "--out", str(tmp_path / "m.npz"), "--store", str(tmp_path)]) == 1
    assert "--out and --flow do not go together" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.services
def test_train_flow_logs_a_parent_and_one_child_with_the_sweep_layout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI",
                                                             "SWEEPNET_DASK_ADDRESS")}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    store = tmp_path / "store"
    run = subprocess.run([sys.executable, "-m", "app", "train", str(XOR), "--flow", "--store", str(store),
                          "--set", "model.epochs=200", "--set", "model.seed=3", "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    uri = f"sqlite:///{store / 'mlflow.db'}"
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("xor-train")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"/#/experiments/{exp.experiment_id}?workflowType=machine_learning" in run.stdout
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")[0]
    ctx = tracking.TrackingContext(uri, exp.experiment_id, parent.info.run_id)
    children = tracking.children(ctx)
    assert [r.info.status for r in children] == ["FINISHED"]
    child = children[0]
    assert float(child.data.params["model.epochs"]) == 200 and child.data.params["model.seed"] == "3"
    assert len(c.get_metric_history(child.info.run_id, "training_objective")) > 1  # the per-epoch series
    assert {"learning_curve.png", "scoring_history.csv", "config.yaml"} <= \
        {a.path for a in c.list_artifacts(child.info.run_id)}
    assert c.get_model_version_by_alias("xor-train", "champion").run_id == child.info.run_id
