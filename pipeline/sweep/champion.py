"""At summary time: the best child's MLflow model, registered under the sweep's name as ``@champion``.

``log_model: all`` children already carry a model; ``best`` children get theirs now, from the weights the
child logged. A census with ``child_per: config`` keeps no per-seed weights, so its best trial is trained
again here: trials are deterministic (same config, seed and data give the same numbers, bit for bit), and the
retrained objective is checked against the logged one before the model is published.
"""

from __future__ import annotations

import math
import tempfile
import traceback
from pathlib import Path
from typing import Any

from pipeline import model_logging, tracking
from pipeline.sweep.runner import load_callable, model_file_extra

TAG_CHAMPION = "sweepnet.champion"
TAG_CHAMPION_ERROR = "sweepnet.champion_error"


def publish(plan, best: dict | None) -> dict[str, Any]:
    """Register the best child's model; return the parent tags that say where it is (or why not).

    Parameters
    ----------
    plan : SweepPlan
    best : dict or None
        The leaderboard's best row (``run_id``, ``key``, ``objective``).
    """
    spec, ctx = plan.spec, plan.ctx
    if spec.model_logging == "none" or not best or not best.get("run_id"):
        return {}
    try:
        try:
            model_id, version = model_logging.champion_from_run(tracking.uri_for(ctx), ctx.experiment_id, spec.name,
                                                                best["run_id"])
        except FileNotFoundError:
            if spec.child_per != "config":
                raise
            model_id = _retrain_and_log(plan, best)
            version = model_logging.register_champion(tracking.uri_for(ctx), spec.name, best["run_id"], model_id)
    except Exception as err:  # noqa: BLE001 - the sweep's results stand without a registered model
        return {TAG_CHAMPION_ERROR: f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"[-4000:]}
    return {TAG_CHAMPION: f"models:/{spec.name}@{model_logging.CHAMPION}",
            "sweepnet.champion_version": version.version, "sweepnet.champion_model_id": model_id}


def _retrain_and_log(plan, best: dict) -> str:
    """Train the best trial of a ``child_per: config`` census again and log its model on the config child."""
    from pipeline.sweep.runner import _with_shared_data

    trial = next((t for t in plan.trials if t.key == best["key"]), None)
    if trial is None:
        raise LookupError(f"the best trial {best['key']} is not in this rung's plan; rerun the sweep to publish it")
    result = _with_shared_data(load_callable(plan.options.train_fn))(trial.config)
    value = float(result.metrics.get(plan.spec.objective.metric, math.nan))
    if value != best["objective"]:
        raise ValueError(f"retraining trial {trial.key} gave {plan.spec.objective.metric} = {value!r}, the sweep "
                         f"logged {best['objective']!r}; the trial is not reproducible, so no model is published")
    with tempfile.TemporaryDirectory() as tmp:
        weights = result.model.save(Path(tmp) / "weights.npz", extra=model_file_extra(result))
        return model_logging.log_model(tracking.uri_for(plan.ctx), plan.ctx.experiment_id, best["run_id"], weights)
