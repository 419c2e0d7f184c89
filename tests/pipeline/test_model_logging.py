"""MLflow models, dataset inputs and the champion of real sweeps on a sqlite store (pipeline.model_logging,
pipeline.sweep.champion): ``models:/NAME@champion`` predicts bit for bit what the child's weights predict."""

from __future__ import annotations

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from pipeline import model_logging, tracking, version
from pipeline.model import DeepLearningModel
from pipeline.sweep import collect, driver, load_sweep, runner

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 150, "distribution": "bernoulli",
                 "optimizer": "sgd", "rate": 0.05}}
X = pd.DataFrame([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], columns=["x1", "x2"])


def sweep(name, **over):
    raw = {"name": name, "base": XOR, "seeds": [1, 2], "chunk_size": 2,
           "objective": {"metric": "train_logloss", "direction": "minimize"},
           "space": {"model.hidden": [[2], [3]], "model.rate": [0.05, 0.1]}}
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("modelstore")


def run(spec, store):
    plan = driver.prepare(spec, store, n_workers=1, check_gradient=False)
    chunks = driver.pending_chunks(plan)
    col = collect.Collector(plan, chunks, every=0)
    for c in chunks:
        col.add(runner.run_chunk(c, plan.ctx, plan.options))
    return plan, collect.finish(plan, col.rows())


def models_of(plan):
    return {r.info.run_id: r.data.tags.get(model_logging.TAG_MODEL_ID) for r in tracking.children(plan.ctx)}


def test_every_finished_child_logs_a_model_and_the_champion_predicts_bit_for_bit(store, tmp_path):
    plan, res = run(sweep("all-models"), store)
    assert plan.spec.model_logging == "all"
    c = tracking.client(plan.ctx.tracking_uri)
    kids = tracking.children(plan.ctx)
    for kid in kids:
        model_id = kid.data.tags.get(model_logging.TAG_MODEL_ID)
        if kid.info.status == "FINISHED":
            assert [o.model_id for o in kid.outputs.model_outputs] == [model_id]  # the runs table's Models column
            assert c.get_logged_model(model_id).status.to_proto() == 2  # READY
        else:
            assert model_id is None
    assert res["champion"] == "models:/all-models@champion"
    version_ = c.get_model_version_by_alias("all-models", "champion")
    assert version_.run_id == res["best"]["run_id"]
    assert version_.tags[model_logging.TAG_MODEL_ID] == models_of(plan)[res["best"]["run_id"]]

    mlflow.set_tracking_uri(plan.ctx.tracking_uri)  # models:/ and runs:/ URIs resolve through the global URI
    try:
        champion = mlflow.pyfunc.load_model("models:/all-models@champion")
        by_run = mlflow.pyfunc.load_model(f"runs:/{res['best']['run_id']}/model")
    finally:
        mlflow.set_tracking_uri(None)
    weights = DeepLearningModel.load(c.download_artifacts(res["best"]["run_id"], "model/weights.npz", str(tmp_path)))
    expected = weights.predict_proba(X.to_numpy())
    assert np.array_equal(champion.predict(X).to_numpy(), expected)  # bit for bit
    assert np.array_equal(by_run.predict(X).to_numpy(), expected)
    assert list(champion.predict(X).columns) == ["-1", "1"]  # XOR's labels, one probability column each


def test_dataset_input_and_source_tags_on_every_child(store):
    regression = {**XOR, "model": {**XOR["model"], "distribution": "gaussian", "standardize": False}}
    plan, _ = run(sweep("inputs", base=regression, objective={"metric": "train_MSE"},
                        space={"model.rate": [0.05, 1.0e6]}), store)  # 1e6 diverges: FAILED children
    kids = tracking.children(plan.ctx)
    assert {k.info.status for k in kids} == {"FINISHED", "FAILED"}
    for kid in kids:
        (inp,) = kid.inputs.dataset_inputs
        assert inp.dataset.name == "xor" and inp.dataset.digest == kid.data.tags["sweepnet.data_digest"][:16]
        assert inp.dataset.source_type == "code"
        assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "training"}
        tags = kid.data.tags
        assert tags["mlflow.source.name"] == "sweepnet"
        assert tags[version.TAG_VERSION] == version.code_version()
        assert tags.get("mlflow.source.git.commit") == version.git_commit()
    finished = next(k for k in kids if k.info.status == "FINISHED")
    schema = finished.inputs.dataset_inputs[0].dataset.schema
    assert '"name": "x1"' in schema and '"name": "x2"' in schema  # the features, known once the data loaded


def test_log_model_best_logs_only_the_best_child_at_summary(store):
    plan, res = run(sweep("best-only", log_model="best", space={"model.hidden": [[2], [3]]}), store)
    logged = {run_id: m for run_id, m in models_of(plan).items() if m}
    assert list(logged) == [res["best"]["run_id"]]
    assert res["champion"] == "models:/best-only@champion"


def test_log_model_none_logs_no_model_and_registers_nothing(store):
    plan, res = run(sweep("no-models", log_model="none", space={"model.hidden": [[2]]}), store)
    assert not any(models_of(plan).values()) and res["champion"] is None
    assert tracking.client(plan.ctx.tracking_uri).search_registered_models("name = 'no-models'") == []


def test_log_model_is_a_logging_option_not_part_of_the_sweep_key():
    keys = {driver.sweep_key(load_sweep(sweep("k", **over)), "digest") for over in ({}, {"log_model": "none"})}
    assert len(keys) == 1  # existing sweeps keep their parent run
    with pytest.raises(ValueError, match="log_model: Input should be 'best', 'all' or 'none'"):
        load_sweep(sweep("k", log_model="some"))


def test_census_defaults_to_best_and_a_config_census_retrains_its_champion(store, tmp_path):
    assert load_sweep(sweep("c", seeds=5)).model_logging == "best"
    assert load_sweep(sweep("c", child_per="config")).model_logging == "best"
    assert load_sweep(sweep("c", seeds=5, log_model="all")).model_logging == "all"
    plan, res = run(sweep("config-census", child_per="config", space={"model.hidden": [[2], [3]]}), store)
    best = res["best"]
    assert res["champion"] == "models:/config-census@champion"
    for kid in tracking.children(plan.ctx):  # per-configuration children: dataset and source too
        assert [d.dataset.name for d in kid.inputs.dataset_inputs] == ["xor"]
        assert kid.data.tags["mlflow.source.name"] == "sweepnet" and version.TAG_VERSION in kid.data.tags
    c = tracking.client(plan.ctx.tracking_uri)
    model_id = c.get_model_version_by_alias("config-census", "champion").tags[model_logging.TAG_MODEL_ID]
    assert c.get_logged_model(model_id).source_run_id == best["run_id"]  # the configuration's child
    mlflow.set_tracking_uri(plan.ctx.tracking_uri)
    try:
        champion = mlflow.pyfunc.load_model("models:/config-census@champion")
    finally:
        mlflow.set_tracking_uri(None)
    trial = next(t for t in plan.trials if t.key == best["key"])
    again = runner.load_callable(plan.options.train_fn)(trial.config)
    assert np.array_equal(champion.predict(X).to_numpy(), again.model.predict_proba(X.to_numpy()))


def test_a_model_that_cannot_be_logged_is_tagged_not_a_lost_trial(store, tmp_path):
    ctx = tracking.open_sweep(tracking.default_tracking_uri(store), "broken-model", "broken-model", "k-broken", {})
    run_id = tracking.log_child(ctx, "t1", "t1", {}, {}, [], {"m": 1.0},
                                before_close=lambda rid: runner._log_model(ctx, rid, tmp_path / "missing.npz"))
    run = tracking.client(ctx.tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "FileNotFoundError: model file" in run.data.tags["sweepnet.model_error"]
    assert model_logging.TAG_MODEL_ID not in run.data.tags
