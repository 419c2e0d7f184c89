"""Asynchronous halving (ASHA) through ``pipeline.sweep.feed`` in one process, with the real ``run_training``
and a real sqlite MLflow store: rungs without a barrier, the promoted share, the job order on the parent, and
a rerun that trains nothing again."""

from __future__ import annotations

import csv
import io
from collections import Counter

from pipeline import tracking
from pipeline.sweep import collect, driver, feed, runner

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "distribution": "gaussian", "standardize": False,
                 "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
SPEC = {"name": "asha", "base": XOR, "seeds": [1, 2], "objective": {"metric": "train_MSE"},
        "strategy": {"kind": "RandomDiscrete", "max_models": 6, "seed": 3},
        "space": {"model.hidden": [[2], [3]], "model.rate": {"loguniform": [0.01, 1.0]}},
        "halving": {"rungs": [20, 60], "keep": 0.5, "mode": "async"}}


def run(store):
    plan = driver.prepare(SPEC, store, n_workers=2, check_gradient=False)
    f = feed.Feed(plan, feed.scheduler_for(plan))
    submitted = 0
    while chunks := f.take():
        for c in chunks:
            submitted += 1
            f.add(runner.run_chunk(c, plan.ctx, plan.options))
    feed.log_study(f)
    return collect.finish(f.plan, f.rows()), f, submitted


def test_async_halving_promotes_the_top_share_and_a_rerun_trains_nothing(tmp_path):
    result, f, submitted = run(tmp_path)
    rungs = Counter(r["rung"] for r in f.rows())
    assert rungs == {0: 12, 1: 6}  # 6 configurations x 2 seeds; floor(6 * 0.5) = 3 promoted
    assert result["best"]["rung"] == 1
    ctx = f.plan.ctx
    jobs = list(csv.DictReader(io.StringIO(tracking.read_artifact_text(ctx, ctx.parent_run_id, "asha_jobs.csv"))))
    assert len(jobs) == 9 and [j["rung"] for j in jobs].index("1") < 6  # promoted before rung 0 was complete
    kids = tracking.children(ctx, status="FINISHED")
    promoted = [r for r in kids if r.data.tags["sweepnet.rung"] == "1"]
    # promotions continue each seed's rung-0 checkpoint (20 epochs) instead of retraining from epoch 0
    assert promoted and all(r.data.tags.get("sweepnet.continued_from_epoch") == "20" for r in promoted)
    children = len(tracking.children(ctx))

    again, g, submitted = run(tmp_path)
    assert submitted == 0 and len(tracking.children(g.plan.ctx)) == children
    assert again["best"]["key"] == result["best"]["key"]
