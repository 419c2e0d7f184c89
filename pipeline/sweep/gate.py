"""The gradient gate: before fan-out, check backprop against finite differences on a small instance of one
trial of every structural class of the sweep (what the objective's terms and shapes are, not where it is
evaluated), within a bounded number of classes and seconds."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pipeline.sweep import expand as ex
from pipeline.sweep.errors import SweepRefused

GRAD_TOL = 1e-6
#: the gate's bound: at most this many structural classes, started within this many seconds
GRAD_MAX_CLASSES = 64
GRAD_BUDGET_S = 120.0
#: units per hidden layer of the checked instance (``pipeline.gradcheck.check_config``'s ``max_hidden``)
GRAD_MAX_HIDDEN = 4


#: model fields that decide which objective the gradient check exercises (the rest, e.g. rate, seed, init,
#: only change the point it is evaluated at, which the check draws itself)
_STRUCTURE = ("activation", "output_activation", "distribution", "loss", "autoencoder", "sparsity_estimate")
#: numeric fields whose on/off (> 0) switches a term of the objective
_SWITCHES = ("l1", "l2", "sparsity_beta")


def structural_class(config: dict[str, Any]) -> str:
    """What the gradient check of ``config`` exercises: activation x output x loss x penalties x sparsity x
    layer shapes (as checked: at most ``GRAD_MAX_HIDDEN`` units) x dropout presence per layer, and the data."""
    from pipeline.config import ModelSpec

    model = ModelSpec.model_validate(config.get("model", {}))
    sig: dict[str, Any] = {k: getattr(model, k) for k in _STRUCTURE}
    sig.update({k: getattr(model, k) > 0 for k in _SWITCHES})
    sig["hidden"] = [min(h, GRAD_MAX_HIDDEN) for h in model.hidden]
    sig["dropout"] = [r > 0 for r in model.dropout_ratios]
    return json.dumps([sig, config.get("data")], sort_keys=True, default=str)


@dataclass
class GradientGate:
    """What :func:`gradient_check` checked: relative difference per checked class (keyed by the config key
    of its first trial), the first trial of each class left unchecked past the cap, and a one-line note."""

    checked: dict[str, float]
    unchecked: list[ex.Trial]
    note: str


def gradient_check(trials: list[ex.Trial], max_classes: int = GRAD_MAX_CLASSES, budget_s: float = GRAD_BUDGET_S,
                   check=None) -> GradientGate:
    """Relative gradient error of a small instance of one trial of every structural class
    (:func:`structural_class`) of the sweep, in trial order, until ``max_classes`` classes are checked or
    ``budget_s`` seconds have passed; the note names what was left unchecked. ``check`` (config -> relative
    difference) defaults to ``pipeline.gradcheck.check_config``.

    Raises
    ------
    SweepRefused
        When any relative difference exceeds ``GRAD_TOL``, or the check cannot run on a config.
    """
    if check is None:
        try:
            from pipeline.gradcheck import check_config as check
        except ImportError:  # engine without a gradient checker: say so instead of silently passing
            print("warning: pipeline.gradcheck is not available; gradient check skipped", flush=True)
            return GradientGate({}, [], "gradient check skipped: pipeline.gradcheck is not available")
    classes: dict[str, ex.Trial] = {}
    for t in trials:
        classes.setdefault(structural_class(t.config), t)
    checked: dict[str, float] = {}
    unchecked: list[ex.Trial] = []
    start = time.perf_counter()
    for t in classes.values():
        if len(checked) >= max_classes or time.perf_counter() - start > budget_s:
            unchecked.append(t)
            continue
        try:
            rel = float(check(t.config))
        except (ValueError, TypeError) as err:
            raise SweepRefused(f"gradient check of trial {t.index} ({t.axes}) could not run: {err}") from None
        checked[t.config_key] = rel
        if not rel <= GRAD_TOL:
            raise SweepRefused(
                f"gradient check failed for trial {t.index} ({t.axes}): relative difference {rel:.3g} > "
                f"{GRAD_TOL:g}; the model's backward pass disagrees with finite differences, fix it before sweeping"
            )
    note = f"gradient checked: {len(checked)} of {len(classes)} structural classes"
    if unchecked:
        examples = "; ".join(f"trial {t.index} ({t.axes})" for t in unchecked[:3])
        note += (f" (cap {max_classes} classes or {budget_s:g} s reached); not checked: {len(unchecked)} classes, "
                 f"e.g. {examples}")
        print(f"warning: {note}", flush=True)
    return GradientGate(checked, unchecked, note)
