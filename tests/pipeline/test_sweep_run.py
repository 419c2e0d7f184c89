"""Sweep steps end to end in one process with the real ``run_training`` and a real sqlite MLflow store:
summary, a diverging trial, resume after an interruption, per-configuration census children.
(The same steps on Dask under Prefect are in tests/flows/.)"""

from __future__ import annotations

import csv
import io

import pytest

from pipeline import tracking
from pipeline.sweep import collect, driver, results_table, runner
from tests.pipeline.rungs import run_rungs

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}


def sweep(name, **over):
    raw = {"name": name, "base": XOR, "seeds": [1, 2], "chunk_size": 2,
           "objective": {"metric": "train_MSE", "direction": "minimize"},
           "census": {"metric": "train_MSE", "solved_below": 0.05},
           "space": {"model.hidden": [[2], [3]], "model.rate": [0.05, 1.0e6]}}  # 1e6 diverges
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("sweepstore")


def run(plan, chunks=None, out=None):
    chunks = driver.pending_chunks(plan) if chunks is None else chunks
    col = collect.Collector(plan, chunks, every=0)
    for c in chunks:
        col.add(runner.run_chunk(c, plan.ctx, plan.options))
    return col, collect.finish(plan, col.rows(), out)


def test_sweep_logs_children_fails_diverging_trials_and_summarises(store, tmp_path):
    plan = driver.prepare(sweep("s1"), store, n_workers=2)
    col, res = run(plan, out=tmp_path)
    assert (res["trials"], res["trials_finished"], res["trials_failed"]) == (8, 4, 4)
    kids = tracking.children(plan.ctx)
    assert sorted(r.info.status for r in kids) == ["FAILED"] * 4 + ["FINISHED"] * 4
    failed = [r for r in kids if r.info.status == "FAILED"]
    assert all("diverged" in r.data.tags[tracking.TAG_ERROR] for r in failed)
    assert all(r.data.tags["sweepnet.axis.model.rate"] == "1000000.0" for r in failed)
    done = [r for r in kids if r.info.status == "FINISHED"]
    arts = {a.path for a in tracking.client(plan.ctx.tracking_uri).list_artifacts(done[0].info.run_id)}
    assert {"config.yaml", "learning_curve.png", "scoring_history.csv", "model"} <= arts
    c = tracking.client(plan.ctx.tracking_uri)
    history = list(csv.DictReader(io.StringIO(tracking.read_artifact_text(plan.ctx, done[0].info.run_id,
                                                                          "scoring_history.csv"))))
    assert {"epoch", "training_objective", "training_MSE", "training_MAE"} <= set(history[0])
    # per-epoch MLflow series: the losses the curve shows and the objective's own series; the rest is in the CSV
    series = {k: c.get_metric_history(done[0].info.run_id, k) for k in ("training_objective", "training_MSE",
                                                                          "training_MAE")}
    assert len(series["training_objective"]) == len(series["training_MSE"]) == len(history) > 1
    assert series["training_MAE"] == []
    assert float(history[-1]["training_MSE"]) == pytest.approx(series["training_MSE"][-1].value)
    assert "train_MAE" in done[0].data.metrics  # every final metric is still logged
    parent = tracking.client(plan.ctx.tracking_uri).get_run(plan.ctx.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweepnet.best_run_id"] == res["best"]["run_id"]
    assert parent.data.metrics["trials_failed"] == 4
    assert parent.data.tags["sweepnet.failure_note"] == ""  # cleared, should an earlier run have set it
    board = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    values = [float(r["train_MSE"]) for r in board[:4]]
    assert values == sorted(values) and board[-1]["status"] == "failed"
    assert {p.name for p in tmp_path.glob("*.png")} == {"axis_model.hidden.png", "axis_model.rate.png",
                                                        "census.png"}


# issue 13: every trial diverges (rate 1e6 with momentum)
ALL_DIVERGE = {"name": "xor", "data": {"source": "xor"},
               "model": {"activation": "Rectifier", "hidden": [8], "epochs": 200, "optimizer": "sgd",
                         "rate": 1.0e6, "momentum_start": 0.9, "distribution": "gaussian"}}


def test_a_sweep_where_every_trial_fails_fails_its_parent_and_says_why(store, tmp_path):
    raw = {"name": "s-all-failed", "base": ALL_DIVERGE, "seeds": [1, 2], "chunk_size": 2,
           "objective": {"metric": "train_MSE"}, "space": {"model.hidden": [[8], [9]]}}
    plan = driver.prepare(raw, store, n_workers=2)
    _, res = run(plan, out=tmp_path)
    assert (res["trials"], res["trials_finished"], res["trials_failed"]) == (4, 0, 4) and res["best"] is None
    assert res["failure_note"].startswith("no trial produced train_MSE: 4 of 4 trials failed; "
                                          "commonest error (4 of 4): TrainingDivergedError: training diverged at epoch")
    parent = tracking.client(plan.ctx.tracking_uri).get_run(plan.ctx.parent_run_id)
    assert parent.info.status == "FAILED"  # no result to select: the sweep failed, its tables are still there
    assert parent.data.tags["sweepnet.failure_note"] == res["failure_note"]
    assert parent.data.metrics["trials_finished"] == 0 and "sweepnet.best_run_id" not in parent.data.tags
    # hidden [8] and [9] are both checked as [4] units: one structural class
    assert parent.data.tags["sweepnet.gradient_check"] == "gradient checked: 1 of 1 structural classes"
    arts = {a.path for a in tracking.client(plan.ctx.tracking_uri).list_artifacts(plan.ctx.parent_run_id)}
    assert {"leaderboard.csv", "census.csv", "census.png"} <= arts
    assert driver.prepare(raw, store, n_workers=2).ctx.parent_run_id  # the lease was released


def test_a_sweep_selecting_on_the_test_set_says_so_on_the_parent(store, tmp_path):
    base = {**XOR, "data": {"source": "digits", "train_rows": 1347},
            "model": {**XOR["model"], "hidden": [4], "epochs": 2, "distribution": "AUTO"}}
    raw = {"name": "s-on-test", "base": base, "seeds": [1], "objective": {"metric": "test_accuracy",
                                                                          "direction": "maximize"}}
    with pytest.raises(driver.SweepRefused, match="select_on_test: true to do it knowingly"):
        driver.prepare(raw, store, n_workers=1)
    plan = driver.prepare({**raw, "select_on_test": True}, store, n_workers=1)
    _, res = run(plan, out=tmp_path)
    assert res["trials_finished"] == 1
    assert res["selection_note"].startswith("selected on the test set (select_on_test: true)")
    parent = tracking.client(plan.ctx.tracking_uri).get_run(plan.ctx.parent_run_id)
    assert parent.data.tags["sweepnet.selection_note"] == res["selection_note"]


def test_resume_runs_only_missing_keys_and_never_duplicates(store):
    spec = sweep("s2", space={"model.hidden": [[2], [3]]})
    plan = driver.prepare(spec, store, n_workers=2)
    chunks = driver.pending_chunks(plan)
    assert [len(c) for c in chunks] == [2, 2]
    col = collect.Collector(plan, chunks, every=0)
    col.add(runner.run_chunk(chunks[0], plan.ctx, plan.options))  # interrupted after one chunk
    again = driver.prepare(spec, store, n_workers=2)
    assert again.ctx == plan.ctx
    left = driver.pending_chunks(again)
    assert [t.key for c in left for t in c] == [t.key for t in chunks[1]]
    col, res = run(again, left)
    assert res["trials_finished"] == 4 and {o.status for o in col.outcomes.values()} == {"finished"}
    # a re-executed chunk (as Dask does after a worker dies) finds the keys and logs nothing
    replay = runner.run_chunk(chunks[0], again.ctx, again.options)
    assert {o.status for o in replay} == {"cached"}
    finished = tracking.children(again.ctx, status="FINISHED")
    assert len(finished) == 4 == len({r.data.tags[tracking.TAG_KEY] for r in finished})


def test_census_mode_logs_one_child_per_configuration_with_seed_table(store):
    plan = driver.prepare(sweep("s3", child_per="config", seeds=3, chunk_size=4), store, n_workers=2)
    _, res = run(plan)
    kids = tracking.children(plan.ctx)
    assert len(kids) == 4 and res["trials"] == 12
    ok = [r for r in kids if r.info.status == "FINISHED"]
    assert len(ok) == 2 and all(r.data.metrics["n_seeds"] == 3 for r in ok)
    rows = results_table.read_tables(plan.ctx)  # the per-seed rows: in the chunk tables on the parent
    mine = [r for r in rows.values() if r["config_key"] == ok[0].data.tags[tracking.TAG_CONFIG]]
    assert len(mine) == 3 and all("train_MSE" in r["metrics"] for r in mine)
    assert {r["table"] for r in mine} == set(ok[0].data.tags[results_table.TAG_TABLES].split(","))
    rerun = driver.prepare(sweep("s3", child_per="config", seeds=3, chunk_size=4), store, n_workers=2)
    keys = driver.config_child_keys(rerun)  # one pass over the trials: the keys the children were logged with
    assert keys == {ck: driver.config_child_key(rerun, ck) for ck in {t.config_key for t in rerun.trials}}
    assert {r.data.tags[tracking.TAG_KEY] for r in kids} == set(keys.values())
    left = driver.pending_chunks(rerun)
    assert sum(map(len, left)) == 6  # only the two all-failed configurations run again
    _, res2 = run(rerun, left)
    assert res2["trials_finished"] == res["trials_finished"] == 6


@pytest.mark.parametrize("objective, twin", [("train_MSE", "training_MSE"), ("valid_logloss", "validation_logloss"),
                                             ("test_accuracy", None)])
def test_curve_keys_are_losses_plus_the_objective_series(objective, twin):
    history = [{"epoch": 1, "samples": 4, "training_objective": 0.5, "training_MSE": 0.4, "training_logloss": 0.3,
                "validation_logloss": 0.2, "validation_MSE": 0.1}]
    expected = {"training_objective", "training_logloss", "validation_logloss"} | ({twin} if twin else set())
    assert runner.curve_keys(history, objective) == expected


def test_next_halving_rung_resizes_chunks_for_longer_trials(store):
    raw = sweep("s-halving", seeds=[1, 2, 3, 4], space={"model.hidden": [[2], [3], [4], [5]]},
                halving={"rungs": [10, 100], "keep": 0.5}, chunk_size="auto", chunk_seconds=1.0)
    plan = driver.prepare(raw, store, n_workers=2)
    plan.trial_secs, plan.chunk_size = 0.05, 16  # as if the probe had timed 0.05 s per rung-0 trial
    rows = [{"key": t.key, "status": "finished", "objective": float(t.axes["model.hidden"][0])} for t in plan.trials]
    nxt = driver.next_rung(plan, rows)
    assert nxt.rung == 1 and nxt.trial_secs == pytest.approx(0.5)  # 10x the epochs, 10x the seconds
    assert nxt.chunk_size == 2  # ~1 s of work per task at 0.5 s per trial
    assert {t.axes["model.hidden"][0] for t in nxt.trials} == {2, 3}  # the best half by mean objective
    assert [len(c) for c in driver.pending_chunks(nxt)] == [2, 2, 2, 2]


def test_trial_keys_carry_the_code_version_and_older_results_are_reused_only_on_request(store, monkeypatch):
    from pipeline import version

    spec = sweep("s-version", space={"model.hidden": [[2], [3]]})
    old = driver.prepare(spec, store, n_workers=2)
    _, res = run(old)
    assert res["trials_finished"] == 4 and res["reused"] == {}
    kid = tracking.children(old.ctx, status="FINISHED")[0]
    parent = tracking.client(old.ctx.tracking_uri).get_run(old.ctx.parent_run_id)
    for tags in (kid.data.tags, parent.data.tags):
        assert tags["sweepnet.version"] == version.code_version()
        assert tags["mlflow.source.name"] == "sweepnet"
        assert tags.get("mlflow.source.git.commit") == version.git_commit(version.ROOT)
    same = driver.prepare(spec, store, n_workers=2)
    assert driver.pending_chunks(same) == []  # same code: every trial is reused
    _, res = run(same)
    assert res["reused"] == {version.code_version(): 4}
    # the training code changes: the keys change, so the results of the older code are not reused ...
    monkeypatch.setattr(version, "code_version", lambda: "0.1.0+newercode000")
    new = driver.prepare(spec, store, n_workers=2)
    assert {t.key for t in new.trials}.isdisjoint(t.key for t in old.trials)
    assert sum(map(len, driver.pending_chunks(new))) == 4
    assert f"4 trials have results of older code ({old_version(old)}: 4)" in new.reuse_note
    # ... unless the user asks for it, and the summary says how many came from which version
    reuse = driver.prepare(spec, store, n_workers=2, reuse_older=True)
    assert driver.pending_chunks(reuse) == []
    _, res = run(reuse)
    assert res["trials_finished"] == 4 and res["reused"] == {old_version(old): 4}
    assert f"reused 4 trials computed by older code ({old_version(old)}: 4)" in res["reuse_note"]


def old_version(plan):
    return tracking.children(plan.ctx, status="FINISHED")[0].data.tags["sweepnet.version"]


def test_census_mode_reuses_configurations_of_older_code_only_on_request(store, monkeypatch):
    from pipeline import version

    raw = sweep("s-version-census", child_per="config", seeds=2, chunk_size=4, space={"model.hidden": [[2], [3]]})
    _, res = run(driver.prepare(raw, store, n_workers=2))
    assert res["trials_finished"] == 4
    old = version.code_version()
    monkeypatch.setattr(version, "code_version", lambda: "0.1.0+newercode000")
    assert sum(map(len, driver.pending_chunks(driver.prepare(raw, store, n_workers=2)))) == 4
    reuse = driver.prepare(raw, store, n_workers=2, reuse_older=True)
    assert driver.pending_chunks(reuse) == [] and reuse.older == {old: 4}
    _, res = run(reuse)
    assert res["trials_finished"] == 4 and res["reused"] == {old: 4}


def test_random_search_stops_launching_configurations_when_the_objective_stalls(store, tmp_path):
    # stopping_tolerance is swept but has no effect (stopping_rounds 0 in the model): all 8 drawn configurations
    # score the same, so after the 2nd wave of 2 (4 >= 2 * stopping_rounds configurations) the search stops
    space = {"model.stopping_tolerance": {"uniform": [0.0, 1.0]}}
    strategy = {"kind": "RandomDiscrete", "max_models": 8, "seed": 3, "stopping_rounds": 2}
    plan = driver.prepare(sweep("grid-stop", space=space, strategy=strategy), store, n_workers=2)
    last, rows = run_rungs(plan)
    res = collect.finish(last, rows, tmp_path)
    assert res["trials"] == 8  # 4 configurations x 2 seeds of the 8 drawn
    assert sorted(r["index"] for r in rows) == list(range(8))
    parent = tracking.client(last.ctx.tracking_uri).get_run(last.ctx.parent_run_id)
    assert parent.data.tags["sweepnet.grid_stopped"].startswith("grid search stopped after 4 configurations")


def test_a_rerun_chunk_fails_the_trial_its_worker_died_in_twice_and_runs_the_rest(store):
    # what a dead worker leaves: marks of trials started and never logged (tests/reliability/test_chunk_faults.py
    # makes them for real with a memory limit); twice -> FAILED "out of memory", once -> trained again
    plan = driver.prepare(sweep("died-in", space={"model.hidden": [[2]]}, seeds=[1, 2, 3]), store, n_workers=1)
    first, second, third = plan.trials
    tracking.mark_started(plan.ctx, first.key, {"attempts": 1, "pid": 1})
    tracking.mark_started(plan.ctx, second.key, {"attempts": 2, "pid": 2, "rss": 1100 * 2**20,
                                                 "limit": 1200 * 2**20})
    outcomes = runner.run_chunk(plan.trials, plan.ctx, plan.options, memory_limit=1200 * 2**20)
    assert [o.status for o in outcomes] == ["finished", "failed", "finished"]
    assert outcomes[1].error.startswith("out of memory: the Dask worker died 2 times while training this trial, "
                                        "last seen using 1100 MiB of its 1200 MiB memory limit")
    failed = tracking.children(plan.ctx, status="FAILED", key=second.key)
    assert len(failed) == 1 and failed[0].data.tags[tracking.TAG_ERROR] == outcomes[1].error
    assert tracking.started_trials(plan.ctx) == {}  # every mark cleared once its trial has a child
    assert third.key in tracking.finished_keys(plan.ctx)


def test_a_trial_mark_that_cannot_be_written_never_fails_the_trial(tmp_path):
    """The started-mark only helps attribute a dead worker; when the store refuses it (here: the parent run
    does not exist, as a write lost under lock contention would look), the trial still trains and logs."""
    ctx = tracking.open_sweep(f"sqlite:///{tmp_path / 'mlflow.db'}", "marks", "marks", "k", {})
    gone = tracking.TrackingContext(ctx.tracking_uri, ctx.experiment_id, "0" * 32)
    with pytest.warns(RuntimeWarning, match="could not mark trial k1 on the parent run"):
        with runner._watch_memory(gone, "k1", {"attempts": 1, "pid": 1}, None):
            trained = True
    assert trained
