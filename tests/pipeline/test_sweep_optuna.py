"""The Optuna strategy in one process with the real ``run_training`` and real sqlite stores (MLflow and the
Optuna study): refusals before fan-out, the ask/tell loop through ``pipeline.sweep.feed``, a rerun that
resumes the study, and an interrupted run finished by the next one without duplicate trials.
(The same loop on Dask under Prefect is in tests/flows/test_sweep_optuna_flow.py.)"""

from __future__ import annotations

from collections import Counter

import optuna
import pytest

from pipeline import tracking
from pipeline.sweep import collect, driver, feed, load_sweep, runner

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 60, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}


def spec(name, **strategy):
    return {"name": name, "base": XOR, "seeds": [1, 2], "objective": {"metric": "train_MSE"},
            "strategy": {"kind": "Optuna", "sampler": "tpe", "n_trials": 5, "seed": 3, **strategy},
            "space": {"model.hidden": [[2], [3]], "model.rate": {"loguniform": [0.01, 1.0]}}}


@pytest.mark.parametrize("change, words", [
    ({"strategy": {"kind": "Optuna", "sampler": "bayes", "n_trials": 5}},
     ["strategy.sampler", "'bayes'", "tpe, cmaes, random, nsga2"]),
    ({"strategy": {"kind": "Optuna", "sampler": "cmaes", "n_trials": 5}},
     ["'cmaes'", "['model.hidden']", "sampler: tpe"]),
    ({"strategy": {"kind": "Optuna", "sampler": "tpe"}}, ["n_trials", "n_trials: 40"]),
    ({"strategy": {"kind": "RandomDiscrete", "max_models": 3, "sampler": "tpe"}}, ["kind Optuna"]),
    ({"child_per": "config"}, ["child_per: config", "child_per: trial"]),
    ({"strategy": {"kind": "RandomDiscrete", "max_models": 3},
      "objective": [{"metric": "train_MSE"}, {"metric": "n_params"}]}, ["2 objectives", "sampler: nsga2"]),
])
def test_refused_with_field_value_and_fix(change, words):
    with pytest.raises(ValueError) as err:
        load_sweep({**spec("bad"), **change})
    for w in words:
        assert w in str(err.value)


def test_an_objective_metric_no_trial_reports_is_refused_before_fan_out(tmp_path):
    raw = {**spec("nometric"), "objective": {"metric": "valid_nope"}}
    raw["objective"] = {"metric": "nope"}
    with pytest.raises(driver.SweepRefused) as err:
        driver.prepare(raw, tmp_path, check_gradient=False)
    assert "objective.metric = 'nope'" in str(err.value) and "train_MSE" in str(err.value)
    # nothing fanned out, the parent is closed and the lease free: the corrected sweep runs at once
    ctx = driver.prepare(spec("nometric"), tmp_path, check_gradient=False).ctx
    assert tracking.children(ctx) == []


def run_feed(raw, store, stop_after=None):
    """The flow's loop in-process; ``stop_after`` chunks: abandon the run there as a killed driver would."""
    plan = driver.prepare(raw, store, n_workers=2, check_gradient=False)
    f = feed.Feed(plan, feed.scheduler_for(plan))
    done = 0
    while chunks := f.take():
        for c in chunks:
            if done == stop_after:
                driver.release_lease(plan)  # the lease of a dead run is taken over; here, released
                return None, f
            f.add(runner.run_chunk(c, plan.ctx, plan.options))
            done += 1
    feed.log_study(f)
    return collect.finish(f.plan, f.rows()), f


def study_of(f):
    return f.scheduler.study


def test_ask_tell_loop_tags_children_and_a_rerun_resumes_the_study(tmp_path):
    result, f = run_feed(spec("tpe"), tmp_path)
    study = study_of(f)
    assert (tmp_path / "optuna.db").is_file()  # beside mlflow.db
    assert len(study.trials) == 5 and all(t.state.is_finished() for t in study.trials)
    children = tracking.children(f.plan.ctx)
    numbers = Counter(r.data.tags["sweepnet.optuna_trial"] for r in children)
    assert len(children) == result["trials"] and all(n <= 2 for n in numbers.values())  # two seeds each
    told = {t.number: t.value for t in study.trials if t.value is not None}
    assert min(told.values()) == pytest.approx(min(r["objective"] for r in f.rows() if r["status"] == "finished"),
                                               rel=1, abs=1)  # values are means of seeds; sanity only
    arts = {a.path for a in tracking.client(f.plan.ctx.tracking_uri).list_artifacts(f.plan.ctx.parent_run_id)}
    assert {"optuna_history.png", "optuna_trials.csv", "leaderboard.csv"} <= arts

    again, g = run_feed(spec("tpe"), tmp_path)
    assert study_of(g).study_name == study.study_name and len(study_of(g).trials) == 5
    assert len(tracking.children(g.plan.ctx)) == len(children)  # nothing trained twice
    assert again["best"]["key"] == result["best"]["key"]


def test_an_interrupted_study_is_finished_by_the_rerun_without_duplicates(tmp_path):
    _, f = run_feed(spec("cut"), tmp_path, stop_after=1)
    states = Counter(t.state.name for t in study_of(f).trials)
    assert states["COMPLETE"] + states["FAIL"] == 1 and states["RUNNING"] >= 1  # cut mid-study
    result, g = run_feed(spec("cut"), tmp_path)
    trials = study_of(g).trials
    assert len(trials) == 5 and all(t.state.is_finished() for t in trials)
    keys = Counter(r.data.tags[tracking.TAG_KEY] for r in tracking.children(g.plan.ctx))
    assert max(keys.values()) == 1  # each trial logged once
    assert result["trials"] == len(keys)
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna.db'}") == [study_of(f).study_name]
    # the resumed sampler goes on from where the study was: a seeded sampler made afresh would ask the
    # first trials' points again (answered from the store: budget spent on nothing)
    assert len({repr(sorted(t.params.items())) for t in trials}) == 5
    numbers = {r.data.tags["sweepnet.optuna_trial"] for r in tracking.children(g.plan.ctx)}
    assert numbers == {str(n) for n in range(5)}


def test_multi_objective_nsga2_puts_the_pareto_front_on_the_parent(tmp_path):
    raw = {**spec("pareto", sampler="nsga2", n_trials=4),
           "objective": [{"metric": "train_MSE", "direction": "minimize"},
                         {"metric": "n_params", "direction": "minimize"}]}
    result, f = run_feed(raw, tmp_path)
    study = study_of(f)
    assert len(study.directions) == 2 and study.metric_names == ["train_MSE", "n_params"]
    told = [t for t in study.trials if t.values]
    assert told and all(t.values[1] in (9.0, 13.0) for t in told)  # 2-2-1 and 2-3-1 networks: 9 and 13 weights
    ctx = f.plan.ctx
    table = tracking.read_artifact_text(ctx, ctx.parent_run_id, "pareto_front.md")
    assert table.startswith("| optuna trial | train_MSE | n_params |") and len(table.splitlines()) >= 3
    arts = {a.path for a in tracking.client(ctx.tracking_uri).list_artifacts(ctx.parent_run_id)}
    assert "pareto_front.png" in arts


def test_the_new_fields_leave_older_sweep_keys_alone():
    # an older sweep's key (and so its resume) must not change because Strategy/Halving grew fields
    base = {"name": "k", "base": XOR, "strategy": {"kind": "RandomDiscrete", "max_models": 2},
            "space": {"model.rate": {"uniform": [0.1, 0.2]}}, "halving": {"rungs": [2, 4]}}
    plain = driver.sweep_key(load_sweep(base), "d")
    assert driver.sweep_key(load_sweep({**base, "halving": {"rungs": [2, 4], "mode": "sync"}}), "d") == plain
    assert driver.sweep_key(load_sweep({**base, "halving": {"rungs": [2, 4], "mode": "async"}}), "d") != plain
    tpe = spec("k")
    assert driver.sweep_key(load_sweep({**tpe, "strategy": {**tpe["strategy"], "max_concurrent": 7}}), "d") == \
        driver.sweep_key(load_sweep(tpe), "d")  # concurrency is how, not what: a rerun with another resumes
