"""Rules of the adaptive strategies that span several fields of a sweep spec (``pipeline.sweep.spec`` calls
them from its validators): Optuna's sampler, budget and space, multi-objective, census children."""

from __future__ import annotations

from typing import Any

#: Optuna samplers a spec may name (``strategy.sampler``); the ones that search several objectives at once.
SAMPLERS = ("tpe", "cmaes", "random", "nsga2")
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random")


def check_optuna(strategy: Any) -> None:
    """Refuse an unknown sampler, a missing budget, or RandomDiscrete fields under Optuna."""
    if strategy.sampler not in SAMPLERS:
        raise ValueError(
            f"strategy.sampler = {strategy.sampler!r} is not an Optuna sampler sweepnet knows; "
            f"use one of {', '.join(SAMPLERS)}, e.g. {{kind: Optuna, sampler: tpe, n_trials: 40}}"
        )
    if strategy.n_trials is None:
        raise ValueError(
            "strategy.kind Optuna needs strategy.n_trials (how many configurations to ask Optuna for), "
            "e.g. {kind: Optuna, sampler: tpe, n_trials: 40}"
        )
    if strategy.max_models is not None or strategy.stopping_rounds:
        raise ValueError(
            "strategy.max_models and stopping_rounds belong to RandomDiscrete; with kind Optuna use n_trials"
        )


def check_adaptive(spec: Any) -> None:
    """Refuse a space the chosen Optuna sampler cannot search, or halving under Optuna."""
    adaptive = spec.strategy.kind == "Optuna" or (spec.halving is not None and spec.halving.mode == "async")
    if adaptive and spec.child_per == "config":
        raise ValueError(
            "child_per: config (census children) needs a fixed set of configurations, but Optuna and halving "
            "mode async decide them as results arrive; use child_per: trial"
        )
    if spec.objectives and (spec.strategy.kind != "Optuna" or spec.strategy.sampler not in MULTI_OBJECTIVE_SAMPLERS):
        raise ValueError(
            f"objective lists {len(spec.objectives)} objectives, which needs strategy.kind Optuna with a "
            f"multi-objective sampler ({', '.join(MULTI_OBJECTIVE_SAMPLERS)}; got kind {spec.strategy.kind}, "
            f"sampler {spec.strategy.sampler}); e.g. strategy: {{kind: Optuna, sampler: nsga2, n_trials: 40}}"
        )
    if spec.strategy.kind != "Optuna":
        return
    if spec.halving is not None:
        raise ValueError(
            "halving with strategy.kind Optuna is not supported (Optuna decides which configurations train); "
            "remove halving, or use kind RandomDiscrete with halving: {mode: async}"
        )
    if spec.strategy.sampler == "cmaes":
        categorical = sorted(f for f, v in spec.space.items()
                             if (isinstance(v, list) and len(v) > 1) or (not isinstance(v, list) and v.choice))
        if categorical:
            raise ValueError(
                f"strategy.sampler = 'cmaes' cannot search categorical axes {categorical} (CMA-ES samples "
                "numbers only); make them {uniform|loguniform|int: [low, high]} distributions or use sampler: tpe"
            )
