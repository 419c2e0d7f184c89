"""Links into the MLflow UI open on the training view; a new experiment carries the experiment-kind tag."""

import pytest

from pipeline import tracking, ui_links


def test_experiment_and_run_links_carry_the_training_view():
    base = ui_links.ui_base("sqlite:////tmp/x/mlflow.db")
    assert base == "http://127.0.0.1:5000"
    assert ui_links.experiment_url(base, "3") == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    assert (ui_links.run_url(base, "3", "abc") ==
            "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert ui_links.ui_base("sqlite:///x.db", port=5123) == "http://127.0.0.1:5123"


def test_a_tracking_server_is_its_own_ui_without_credentials():
    assert ui_links.ui_base("http://ann:s3cret@mlflow:5000/") == "http://mlflow:5000"
    links = ui_links.sweep_links("https://ann:pw@ml.example/mlflow", "7", "r1")
    assert links == {"experiment_url": "https://ml.example/mlflow/#/experiments/7?workflowType=machine_learning",
                     "parent_url": "https://ml.example/mlflow/#/experiments/7/runs/r1?workflowType=machine_learning"}


def test_empty_ids_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="experiment_id is empty"):
        ui_links.experiment_url("http://h:1", "")
    with pytest.raises(ValueError, match="run_id is empty"):
        ui_links.run_url("http://h:1", "1", "")


def test_open_sweep_tags_the_experiment_kind_and_store_links_list_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = tracking.open_sweep(uri, "kind-check", "kind-check", "k1", {"a": 1}, tmp_path / "art")
    exp = tracking.client(uri).get_experiment(ctx.experiment_id)
    assert exp.tags[ui_links.EXPERIMENT_KIND_TAG] == "custom_model_development"
    tracking.client(uri).delete_experiment_tag(ctx.experiment_id, ui_links.EXPERIMENT_KIND_TAG)
    tracking.open_sweep(uri, "kind-check", "kind-check", "k1", {"a": 1})  # a rerun restores a missing tag
    assert tracking.client(uri).get_experiment(ctx.experiment_id).tags[ui_links.EXPERIMENT_KIND_TAG] == \
        "custom_model_development"
    assert ui_links.store_links(uri, 5001) == {
        "kind-check": f"http://127.0.0.1:5001/#/experiments/{ctx.experiment_id}?workflowType=machine_learning"}

