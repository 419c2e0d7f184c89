"""Rungs that continue from the previous rung's checkpoint instead of retraining from epoch 0.

A continuing trial carries its instructions in ``Trial.extra`` (plain data, pickled to the workers; not part
of the trial key, which already differs per rung through ``model.epochs``):

``horizon`` : int
    The trial scores as a run of this many epochs would (the sweep's longest run), so a trial continued to
    E epochs has exactly the weights *and* scoring history of a straight E-epoch run
    (:mod:`pipeline.checkpoint`). A trial that must train from 0 therefore gives the same result too: only
    the compute differs.
``checkpoint`` : bool
    The trial's MLflow child gets :data:`ARTIFACT` (weights, optimiser state, counters, history, ...).
``resume_from`` : str
    Key of the trial it continues (same configuration and seed, fewer epochs). The worker finds that trial's
    FINISHED child in the same sweep (parent run) and downloads its checkpoint through the tracking store,
    so it works when workers share no disk with the driver.

Contract for a scheduler (ASHA)::

    first = replace(trial, extra={**trial.extra, **rung_extra(horizon=H, checkpoint=True)})
    ...                                  # run it; once its child is FINISHED:
    more = continue_trial(first, epochs=E, rung=r, horizon=H)
    ...                                  # run ``more`` like any trial (runner.run_chunk)

- ``continue_trial`` returns a new :class:`~pipeline.sweep.expand.Trial` with ``model.epochs = E`` in its config
  and axes, a new key and configuration key, the same seed and index, ``rung = r`` and
  ``extra = {horizon: H, checkpoint: <arg>, resume_from: first.key}``; E must exceed ``first``'s epochs and
  both must use the same H (pick H = the most epochs any trial may reach).
- Run it only after ``first``'s child is FINISHED. If its checkpoint is missing or cannot continue exactly
  (lbfgs, ``max_runtime_secs``, ...: :func:`pipeline.checkpoint.resume_refusal`), the trial trains from epoch 0
  and its child says why (tag ``sweepnet.continue_note``); a continued child is tagged
  ``sweepnet.continued_from_epoch`` / ``sweepnet.continued_from_run``; every such child logs ``epochs_trained``.
- :func:`saved_metrics` over the summary rows gives the compute saved, for the parent run.
"""

from __future__ import annotations

import copy
import inspect
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from pipeline import checkpoint, tracking, version
from pipeline.sweep import expand as ex

__all__ = ["ARTIFACT", "continue_trial", "enabled", "mark_rung", "result_tags", "rung_extra", "saved_metrics",
           "train_kwargs", "write_checkpoint"]

#: Where a trial's checkpoint lives among its child's artifacts.
ARTIFACT = "checkpoint/checkpoint.npz"


def enabled(spec) -> tuple[bool, str]:
    """Whether ``spec``'s halving continues promoted configurations, and if not (with halving) why."""
    if spec.halving is None:
        return False, ""
    if not spec.halving.continue_:
        return False, "halving.continue is false: every rung trains from epoch 0"
    if spec.child_per != "trial":
        return False, ("child_per: config logs no per-trial children to hold checkpoints: every rung trains from "
                       "epoch 0 (use child_per: trial to continue)")
    return True, ""


def rung_extra(horizon: int, checkpoint: bool = True, resume_from: str | None = None) -> dict[str, Any]:
    """The ``Trial.extra`` entries of a continuing trial (see the module docstring)."""
    extra: dict[str, Any] = {"horizon": int(horizon), "checkpoint": bool(checkpoint)}
    if resume_from:
        extra["resume_from"] = resume_from
    return extra


def _slot(trial: ex.Trial) -> str:
    """Configuration and seed, without the epochs: what a later rung's trial shares with its earlier one."""
    return json.dumps({k: v for k, v in trial.axes.items() if k != "model.epochs"}, sort_keys=True, default=str)


def mark_rung(spec, trials: list[ex.Trial], previous: list[ex.Trial] | None = None) -> list[ex.Trial]:
    """``trials`` of a synchronous halving rung with their continuation: every rung scores on the last rung's
    horizon, all but the last write a checkpoint, and each trial of a later rung resumes from the trial of
    ``previous`` (the rung before) with the same configuration and seed. Unchanged when continuation is off."""
    if not enabled(spec)[0]:
        return trials
    rungs = spec.halving.rungs
    before = {_slot(t): t.key for t in previous or []}
    return [replace(t, extra={**t.extra, **rung_extra(rungs[-1], t.rung < len(rungs) - 1, before.get(_slot(t)))})
            for t in trials]


def continue_trial(trial: ex.Trial, epochs: int, *, rung: int, horizon: int, checkpoint: bool = True,
                   resolver: Callable[[dict], dict] = ex.default_resolver) -> ex.Trial:
    """A trial that continues ``trial`` (which ran with ``rung_extra(horizon, checkpoint=True)``) to ``epochs``.

    Raises
    ------
    ValueError
        When ``epochs`` is not beyond ``trial``'s epochs or beyond ``horizon``.
    """
    from pipeline.config import get_dotted, set_dotted  # lazily, as expand does: pipeline.config loads datasets

    before = get_dotted(trial.config, "model.epochs")
    if not before < epochs <= horizon:
        raise ValueError(f"epochs = {epochs} must be beyond the continued trial's model.epochs = {before} and at "
                         f"most horizon = {horizon}; pick a later rung's epochs")
    raw = copy.deepcopy(trial.config)
    set_dotted(raw, "model.epochs", epochs)
    config = resolver(raw)
    return replace(trial, key=ex.trial_key(config, trial.seed, trial.data_digest, version.code_version()),
                   config_key=ex.config_key(config, trial.data_digest),
                   axes={**trial.axes, "model.epochs": epochs}, config=config, rung=rung,
                   extra={**trial.extra, **rung_extra(horizon, checkpoint, trial.key)})


def accepts(train: Callable) -> bool:
    """Whether a trial function takes ``resume``/``horizon`` (the real one does; test doubles may not)."""
    try:
        params = inspect.signature(train).parameters
    except (TypeError, ValueError):
        return False
    return "horizon" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def train_kwargs(trial: ex.Trial, ctx) -> dict[str, Any]:
    """``horizon`` and ``resume`` for the trial function ({} for a trial that does not continue); ``resume`` is
    the previous rung's checkpoint, fetched through the tracking store, or why it is unavailable."""
    extra = trial.extra or {}
    if "horizon" not in extra:
        return {}
    kwargs: dict[str, Any] = {"horizon": int(extra["horizon"])}
    if extra.get("resume_from"):
        kwargs["resume"] = fetch(ctx, extra["resume_from"])
    return kwargs


def fetch(ctx, key: str):
    """The checkpoint of trial ``key``'s FINISHED child (its ``source`` set to the run id), or
    :class:`pipeline.checkpoint.Unavailable` saying why not."""
    if ctx is None:
        return checkpoint.Unavailable("no tracking store to fetch the previous rung's checkpoint from")
    run_id = "?"
    try:
        runs = tracking.children(ctx, status="FINISHED", key=key)
        if not runs:
            return checkpoint.Unavailable(f"the previous rung's trial {key} has no FINISHED child")
        run_id = runs[0].info.run_id
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = checkpoint.load_checkpoint(tracking.client(tracking.uri_for(ctx)).download_artifacts(
                run_id, ARTIFACT, tmp))
    except Exception as err:  # noqa: BLE001 - no checkpoint: train from epoch 0 and say why
        return checkpoint.Unavailable(f"could not fetch {ARTIFACT} of the previous rung's child {run_id} (trial "
                                      f"{key}): {type(err).__name__}: {err}"[:2000])
    ckpt.source = run_id
    return ckpt


def write_checkpoint(folder: Path, trial: ex.Trial, result) -> bool:
    """Save the trial's checkpoint under ``folder`` (its child's artifacts) when it is asked to write one and
    its training can continue (stochastic optimisers); returns whether it wrote one."""
    model = getattr(result, "model", None)
    if not (trial.extra or {}).get("checkpoint") or getattr(model, "train_state_", None) is None:
        return False
    checkpoint.save_checkpoint(checkpoint.from_model(model, getattr(result, "data_digest", "")), folder / ARTIFACT)
    return True


def result_tags(result) -> dict[str, Any]:
    """Child tags saying where a continuing trial started: the epoch and run it continued, or why it did not."""
    cont = getattr(result, "continuation", None) or {}
    if not cont:
        return {}
    tags: dict[str, Any] = {"sweepnet.continued_from_epoch": cont.get("from_epoch", 0)}
    if cont.get("source"):
        tags["sweepnet.continued_from_run"] = cont["source"]
    if cont.get("note"):
        tags["sweepnet.continue_note"] = cont["note"][:4000]
    return tags


def saved_metrics(rows: list[dict]) -> dict[str, float]:
    """Parent metrics of the compute continuation saved: epochs the trials stand for (a straight run each),
    epochs actually trained, and the difference. {} when no trial reported ``epochs_trained``."""
    ran = [r["metrics"] for r in rows if "epochs_trained" in (r.get("metrics") or {})]
    if not ran:
        return {}
    total = sum(float(m.get("epochs_run", 0.0)) for m in ran)
    trained = sum(float(m["epochs_trained"]) for m in ran)
    return {"epochs_straight_total": total, "epochs_trained_total": trained,
            "continuation_epochs_saved": total - trained}
