"""Successive halving that continues promoted trials from the previous rung's checkpoint, in one process with
the real ``run_training`` and a real sqlite MLflow store (on Dask under Prefect: tests/flows/test_sweep_flow.py):
the continued trial equals a straight run bit for bit, the parent reports the epochs saved, a rerun reuses
every rung, ``halving.continue: false`` retrains, and a scheduler's ``continue_trial`` builds a new rung."""

from __future__ import annotations

import math

import pytest

from pipeline import tracking
from pipeline.model import DeepLearningModel
from pipeline.sweep import collect, continuation, driver, expand, runner
from pipeline.train import run_training
from tests.pipeline.rungs import run_rungs

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 1e-4,
                 "momentum_start": 0.5, "momentum_ramp": 200, "momentum_stable": 0.9}}


def spec(name, **halving):
    return {"name": name, "base": XOR, "seeds": [1, 2], "chunk_size": 2,
            "objective": {"metric": "train_MSE", "direction": "minimize"},
            "space": {"model.hidden": [[2], [3]]}, "halving": {"rungs": [30, 90], "keep": 0.5, **halving}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("continuestore")


def run_all(plan):
    """Every rung as the flow runs them (chunks in this process), then the summary."""
    last, rows = run_rungs(plan)
    return last, collect.finish(last, rows, None)


def children_by_rung(ctx):
    out: dict[str, list] = {}
    for kid in tracking.children(ctx, status="FINISHED"):
        out.setdefault(kid.data.tags["sweepnet.rung"], []).append(kid)
    return out


def weights(ctx, run_id, tmp_path):
    local = tracking.client(tracking.uri_for(ctx)).download_artifacts(run_id, "model/weights.npz", str(tmp_path))
    return DeepLearningModel.load(local)


def test_promoted_trials_continue_bit_identical_and_the_parent_reports_the_saving(store, tmp_path):
    last, res = run_all(driver.prepare(spec("continue-on"), store, n_workers=1, check_gradient=False))
    ctx = last.ctx
    rungs = children_by_rung(ctx)
    assert sorted((r, len(k)) for r, k in rungs.items()) == [("0", 4), ("1", 2)]
    first = {(k.data.tags["sweepnet.axis.model.hidden"], k.data.tags["sweepnet.seed"]): k for k in rungs["0"]}
    for kid in rungs["1"]:
        tags = kid.data.tags
        before = first[(tags["sweepnet.axis.model.hidden"], tags["sweepnet.seed"])]
        assert tags["sweepnet.continued_from_epoch"] == "30" and "sweepnet.continue_note" not in tags
        assert tags["sweepnet.continued_from_run"] == before.info.run_id
        # 60 more epochs, or fewer when regression_stop ends it early (as it ends the straight run)
        assert kid.data.metrics["epochs_trained"] == kid.data.metrics["epochs_run"] - 30 <= 60
        # the continued trial is a straight 90-epoch run, bit for bit (weights and scoring history)
        trial = next(t for t in last.trials if t.key == tags[tracking.TAG_KEY])
        straight = run_training(trial.config, horizon=90)
        model = weights(ctx, kid.info.run_id, tmp_path / kid.info.run_id)
        assert model.params_.tobytes() == straight.model.params_.tobytes()
        assert model.history_ == straight.history
    assert all(continuation.ARTIFACT in {a.path for a in tracking.client(tracking.uri_for(ctx)).list_artifacts(
        k.info.run_id, "checkpoint")} for k in rungs["0"])
    parent = tracking.client(tracking.uri_for(ctx)).get_run(ctx.parent_run_id).data
    assert parent.metrics["continuation_epochs_saved"] == res["continuation_epochs_saved"] == 2 * 30
    assert parent.metrics["epochs_trained_total"] == 4 * 30 + sum(k.data.metrics["epochs_trained"] for k in rungs["1"])
    assert parent.tags["sweepnet.continuation"].startswith("on")

    again, res2 = run_all(driver.prepare(spec("continue-on"), store, n_workers=1, check_gradient=False))
    assert len(tracking.children(again.ctx)) == 6 and res2["trials_finished"] == 6  # every rung reused


def test_continue_false_retrains_every_rung_to_the_same_weights(store, tmp_path):
    last, res = run_all(driver.prepare(spec("continue-off", **{"continue": False}), store, n_workers=1,
                                       check_gradient=False))
    rungs = children_by_rung(last.ctx)
    assert all("sweepnet.continued_from_epoch" not in k.data.tags and "epochs_trained" not in k.data.metrics
               for k in rungs["1"])
    assert "continuation_epochs_saved" not in res
    on, _ = run_all(driver.prepare(spec("continue-on"), store, n_workers=1, check_gradient=False))
    cont = {k.data.tags[tracking.TAG_KEY]: k for k in children_by_rung(on.ctx)["1"]}
    for kid in rungs["1"]:  # retrained from 0 or continued: the same weights (the scoring grid differs)
        other = cont[kid.data.tags[tracking.TAG_KEY]]
        a = weights(last.ctx, kid.info.run_id, tmp_path / "a" / kid.info.run_id)
        b = weights(on.ctx, other.info.run_id, tmp_path / "b" / kid.info.run_id)
        assert a.params_.tobytes() == b.params_.tobytes()


def test_a_promoted_trial_without_a_checkpoint_trains_from_zero_and_says_why(store):
    plan = driver.prepare(spec("continue-lbfgs"), store, n_workers=1, check_gradient=False)
    lbfgs = [expand.Trial(**{**t.__dict__, "config": {**t.config, "model": {**t.config["model"],
                                                                           "optimizer": "lbfgs"}}})
             for t in plan.trials[:1]]
    runner.run_chunk(lbfgs, plan.ctx, plan.options)  # rung 0 under lbfgs: no checkpoint to write
    nxt = continuation.continue_trial(plan.trials[0], 90, rung=1, horizon=90)
    out = runner.run_chunk([nxt], plan.ctx, plan.options)[0]
    assert out.status == "finished" and out.metrics["epochs_trained"] == out.metrics["epochs_run"] > 0
    kid = tracking.children(plan.ctx, key=nxt.key)[0]
    assert "could not fetch checkpoint/checkpoint.npz" in kid.data.tags["sweepnet.continue_note"]
    driver.release_lease(plan)


def test_continue_trial_builds_the_next_rung_for_a_scheduler():
    plan_trial = expand.Trial(index=3, key="k0", config_key="c0", seed=1, axes={"model.seed": 1, "model.epochs": 30},
                              config={**XOR, "model": {**XOR["model"], "epochs": 30, "seed": 1}}, rung=0,
                              data_digest="d", extra=continuation.rung_extra(90))
    nxt = continuation.continue_trial(plan_trial, 60, rung=1, horizon=90, resolver=lambda c: c)
    assert (nxt.index, nxt.seed, nxt.rung, nxt.axes["model.epochs"], nxt.config["model"]["epochs"]) == (3, 1, 1, 60, 60)
    assert nxt.key not in ("k0", plan_trial.key) and nxt.extra == {"horizon": 90, "checkpoint": True,
                                                                    "resume_from": "k0"}
    assert nxt.config_key == expand.config_key(nxt.config, "d")
    with pytest.raises(ValueError, match="epochs = 30 must be beyond"):
        continuation.continue_trial(plan_trial, 30, rung=1, horizon=90, resolver=lambda c: c)
    assert not math.isnan(nxt.config["model"]["epochs"])
