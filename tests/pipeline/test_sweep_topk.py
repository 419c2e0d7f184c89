"""Pictures of the best trials drawn at summary time (``pipeline.sweep.topk``) on a real sqlite MLflow store:
the top-k children get a learning curve and a feature picture, every child keeps its history and weights."""

from __future__ import annotations

from pipeline import tracking
from pipeline.sweep import collect, driver, runner, summary, topk

DIGITS = {"name": "digits", "data": {"source": "digits", "train_rows": 1347},
          "model": {"hidden": [5], "epochs": 2, "mini_batch_size": 32, "optimizer": "adam", "rate": 0.001}}


def _arts(plan, run_id: str) -> set[str]:
    c = tracking.client(plan.ctx.tracking_uri)
    return {a.path for a in c.list_artifacts(run_id)}


def test_only_the_top_k_children_get_pictures_and_every_child_keeps_history_and_weights(tmp_path):
    spec = {"name": "topk", "base": DIGITS, "seeds": [1, 2, 3], "pictures_top_k": 2, "log_model": "none",
            "objective": {"metric": "valid_accuracy", "direction": "maximize"},
            "space": {"model.l1": [0.0, 1.0e-4], "data.valid_fraction": [0.2]}}
    plan = driver.prepare(spec, tmp_path / "store", check_gradient=False)
    outcomes = [o for chunk in driver.pending_chunks(plan) for o in runner.run_chunk(chunk, plan.ctx, plan.options)]
    assert all(o.status == "finished" for o in outcomes) and len(outcomes) == 6
    # the worker logs no pictures: they are drawn later, for the best trials only
    assert not {"learning_curve.png", "features.png"} & _arts(plan, outcomes[0].run_id)
    rows = [o.row({}) for o in outcomes]
    collect.finish(plan, rows, tmp_path / "summary")
    ranked = [r["run_id"] for r in summary.leaderboard(rows, "maximize")]
    for rank, run_id in enumerate(ranked):
        arts = _arts(plan, run_id)
        assert {"config.yaml", "scoring_history.csv", "model"} <= arts
        pictures = {"learning_curve.png", "features.png"} & arts
        assert pictures == ({"learning_curve.png", "features.png"} if rank < 2 else set()), (rank, arts)


def test_draw_trial_draws_any_child_on_demand_and_read_history_restores_numbers(tmp_path):
    spec = {"name": "ondemand", "base": DIGITS, "seeds": [1], "pictures_top_k": 0, "log_model": "none",
            "objective": {"metric": "valid_accuracy", "direction": "maximize"},
            "space": {"data.valid_fraction": [0.2]}}
    plan = driver.prepare(spec, tmp_path / "store", check_gradient=False)
    [out] = runner.run_chunk(plan.trials, plan.ctx, plan.options)
    collect.finish(plan, [out.row({})], tmp_path / "summary")
    assert not {"learning_curve.png", "features.png"} & _arts(plan, out.run_id)  # pictures_top_k: 0
    assert topk.draw_trial(plan.ctx, out.run_id, title="t") == ["features.png", "learning_curve.png"]
    assert {"learning_curve.png", "features.png"} <= _arts(plan, out.run_id)
    (tmp_path / "h.csv").write_text("epoch,training_MSE,note\n1,0.5,\n2,0.25,x\n")
    assert topk.read_history(tmp_path / "h.csv") == [{"epoch": 1.0, "training_MSE": 0.5},
                                                     {"epoch": 2.0, "training_MSE": 0.25, "note": "x"}]
