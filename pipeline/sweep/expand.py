"""Deterministic expansion of a sweep into trials, trial keys, successive-halving rungs and chunks.

The same spec and dataset always give the same trials in the same order with the same keys:
random draws come from ``np.random.Generator(SeedSequence(strategy.seed))``, never the global RNG.
A trial key is ``sha256(resolved trial config, seed, dataset digest, code version)[:16]``; it is what makes
a rerun skip finished work (of the same code: see ``pipeline.version``) and what stops a re-executed Dask task from logging a trial twice.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline import version
from pipeline.sweep.spec import Distribution, SweepSpec, base_config_dict


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep (picklable; carries plain data only).

    Attributes
    ----------
    index : int
        Position in the expansion (stable across reruns).
    key : str
        16 hex chars, hash of (resolved config, seed, dataset digest, code version).
    config_key : str
        Hash of the configuration without its seed: trials that differ only by seed share it.
    seed : int or None
        The initialisation seed (``model.seed``), ``None`` if the config has none.
    axes : dict
        Swept dotted field -> value (the seed axis included as ``model.seed``).
    config : dict
        The resolved training config (``TrainConfig.model_dump(mode="json")``).
    rung : int
        Successive-halving rung (0 without halving).
    """

    index: int
    key: str
    config_key: str
    seed: int | None
    axes: dict[str, Any]
    config: dict[str, Any]
    rung: int = 0
    data_digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def default_resolver(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a training config with ``pipeline.config.load_config`` and return it resolved."""
    from pipeline.config import load_config

    return load_config(config).model_dump(mode="json")


def default_digest(data: dict[str, Any]) -> str:
    """Digest of the dataset a data spec points at (``pipeline.datasets.load_data(spec).meta``)."""
    from pipeline.datasets import DataSpec, load_data

    return str(load_data(DataSpec.model_validate(data)).meta["digest"])


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_key(config: dict[str, Any], seed: int | None, data_digest: str, code: str | None = None) -> str:
    """``sha256(resolved config, seed, dataset digest, code version)[:16]``; ``code=None`` gives the key of
    results logged before keys carried a code version."""
    payload = {"config": config, "seed": seed, "data": data_digest}
    if code is not None:
        payload["code"] = code
    return _digest(payload)


def config_key(config: dict[str, Any], data_digest: str) -> str:
    """Key of a configuration without its seed: trials that differ only by ``model.seed`` share it."""
    no_seed = copy.deepcopy(config)
    if isinstance(no_seed.get("model"), dict):
        no_seed["model"].pop("seed", None)
    return _digest({"config": no_seed, "data": data_digest})


def draw_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The configurations (without seeds) the strategy visits, in a deterministic order."""
    fields = sorted(spec.space)
    if spec.strategy.kind == "Cartesian":
        points = [dict(zip(fields, combo)) for combo in itertools.product(*(spec.space[f] for f in fields))]
        return points[: spec.strategy.max_models] if spec.strategy.max_models else points
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(spec.strategy.seed)))
    want = spec.strategy.max_models or spec.strategy.n_trials or 1  # Optuna: random draws to validate and warm
    finite = all(isinstance(spec.space[f], list) for f in fields)
    if finite:
        grid = [dict(zip(fields, c)) for c in itertools.product(*(spec.space[f] for f in fields))]
        order = rng.permutation(len(grid))
        return [grid[i] for i in order[:want]]
    points, seen = [], set()
    for _ in range(want * 100):
        point = {f: _draw(spec.space[f], rng) for f in fields}
        tag = json.dumps(point, sort_keys=True, default=str)
        if tag not in seen:
            seen.add(tag)
            points.append(point)
        if len(points) == want:
            break
    return points


def _draw(values: list[Any] | Distribution, rng: np.random.Generator) -> Any:
    if isinstance(values, Distribution):
        return values.sample(rng)
    return copy.deepcopy(values[int(rng.integers(len(values)))])


def expand(
    spec: SweepSpec,
    resolver: Callable[[dict], dict] = default_resolver,
    digest: Callable[[dict], str] = default_digest,
    rung: int = 0,
    points: list[dict[str, Any]] | None = None,
) -> list[Trial]:
    """All trials of ``spec`` (for successive halving: of rung ``rung`` over ``points``).

    Raises
    ------
    ValueError
        When an override makes an invalid training config; the message names the trial's axes.
    """
    base = base_config_dict(spec)
    seeds = spec.seed_axis
    points = draw_points(spec) if points is None else points
    digests: dict[str, str] = {}
    trials: list[Trial] = []
    for point in points:
        for seed in seeds if seeds is not None else [None]:
            axes = dict(point)
            if seed is not None:
                axes["model.seed"] = seed
            if spec.halving is not None:
                axes["model.epochs"] = spec.halving.rungs[rung]
            trials.append(_make_trial(spec, base, axes, len(trials), rung, resolver, digest, digests))
    return trials


def _make_trial(spec, base, axes, index, rung, resolver, digest, digests) -> Trial:
    from pipeline.config import get_dotted, set_dotted  # lazily: pipeline.config loads the datasets

    raw = copy.deepcopy(base)
    for dotted, value in axes.items():
        set_dotted(raw, dotted, copy.deepcopy(value))
    try:
        config = resolver(raw)
    except Exception as err:  # pydantic's ValidationError or the loader's ValueError
        raise ValueError(f"sweep {spec.name!r}: the trial with {axes} is not a valid config: {err}") from None
    data = config.get("data", {})
    data_tag = json.dumps(data, sort_keys=True, default=str)
    if data_tag not in digests:
        digests[data_tag] = digest(data)
    seed = get_dotted(config, "model.seed")
    return Trial(
        index=index,
        key=trial_key(config, seed, digests[data_tag], version.code_version()),
        config_key=config_key(config, digests[data_tag]),
        seed=seed,
        axes=axes,
        config=config,
        rung=rung,
        data_digest=digests[data_tag],
    )


def promote(spec: SweepSpec, trials: list[Trial], objective: dict[str, float]) -> list[dict[str, Any]]:
    """Configurations that go on to the next halving rung: the best ``keep`` share by mean objective.

    ``objective`` maps trial key -> objective value (missing or non-finite = failed, ranked last).
    """
    by_point: dict[str, list[float]] = {}
    point_of: dict[str, dict[str, Any]] = {}
    for t in trials:
        point = {k: v for k, v in t.axes.items() if k not in ("model.seed", "model.epochs")}
        tag = json.dumps(point, sort_keys=True, default=str)
        point_of[tag] = point
        value = objective.get(t.key, math.nan)
        by_point.setdefault(tag, []).append(value if math.isfinite(value) else math.nan)
    sign = 1.0 if spec.objective.direction == "minimize" else -1.0

    def score(tag: str) -> float:
        vals = by_point[tag]
        return math.inf if any(math.isnan(v) for v in vals) else sign * float(np.mean(vals))

    ranked = sorted(by_point, key=score)
    n_keep = max(1, round(len(ranked) * spec.halving.keep))
    return [point_of[tag] for tag in ranked[:n_keep] if math.isfinite(score(tag))]


def auto_chunk_size(n_trials: int, trial_secs: float, n_workers: int, target_secs: float = 20.0) -> int:
    """Trials per Prefect task so a task carries ~``target_secs`` (a task costs ~0.2-0.5 s of
    orchestration) yet every worker gets at least two tasks."""
    by_time = max(1, int(target_secs / max(trial_secs, 1e-6)))
    balance = max(1, math.ceil(n_trials / (2 * max(n_workers, 1))))
    return max(1, min(by_time, balance))


def chunk(trials: list[Trial], size: int, n_workers: int = 1) -> list[list[Trial]]:
    """Split ``trials`` into consecutive chunks of at most ``size``, as even as possible.

    The number of chunks is rounded up to a multiple of ``n_workers`` and the sizes differ by at most
    one, so the last round of tasks does not leave workers idle (16 trials, size 6, 2 workers:
    4 chunks of 4, not 6 + 6 + 4).
    """
    if size <= 0:
        raise ValueError(f"chunk size = {size} must be positive")
    if not trials:
        return []
    n_chunks = -(-len(trials) // size)
    n_chunks = min(len(trials), -(-n_chunks // max(n_workers, 1)) * max(n_workers, 1))
    base, extra = divmod(len(trials), n_chunks)
    out, start = [], 0
    for i in range(n_chunks):
        stop = start + base + (1 if i < extra else 0)
        out.append(trials[start:stop])
        start = stop
    return out


def waves(spec: SweepSpec, trials: list[Trial]) -> list[list[Trial]]:
    """``trials`` in waves of ``strategy.stopping_rounds`` configurations, in draw order (one wave when
    grid early stopping is off): the fixed points where :func:`grid_stop` decides, so a rerun stops at
    the same configuration whatever the cluster's timing."""
    rounds = spec.strategy.stopping_rounds
    order = list(dict.fromkeys(t.config_key for t in trials))
    if not rounds or len(order) <= rounds:
        return [trials]
    wave_of = {ck: i // rounds for i, ck in enumerate(order)}
    out: list[list[Trial]] = [[] for _ in range(max(wave_of.values()) + 1)]
    for t in trials:
        out[wave_of[t.config_key]].append(t)
    return out


def grid_stop(spec: SweepSpec, rows: list[dict[str, Any]]) -> str:
    """Why a RandomDiscrete search launches no more configurations ('' to go on): h2o's search_criteria
    rule (:func:`pipeline.fitting.should_stop`) over each configuration's mean ``strategy.stopping_metric``
    (AUTO: the objective) across its finished seeds, configurations in draw order (summary ``rows``)."""
    from pipeline.fitting import should_stop  # lazily: pipeline.fitting loads the kernels
    from pipeline.metrics import LOWER_IS_BETTER

    strategy = spec.strategy
    name = strategy.stopping_metric
    if name == "AUTO":
        name, lower = spec.objective.metric, spec.objective.direction == "minimize"
    else:
        lower = LOWER_IS_BETTER.get(name.split("_", 1)[-1], True)
    values: dict[str, list[float]] = {}
    for r in sorted(rows, key=lambda r: r["index"]):
        value = r["objective"] if strategy.stopping_metric == "AUTO" else r["metrics"].get(name, math.nan)
        ok = r["status"] in ("finished", "cached") and math.isfinite(value)
        values.setdefault(r["config_key"], []).extend([value] if ok else [])
    history = [{"value": float(np.mean(v)) if v else math.nan} for v in values.values()]
    if not should_stop(history, "value", strategy.stopping_rounds, strategy.stopping_tolerance, lower):
        return ""
    return (f"grid search stopped after {len(history)} configurations (strategy.stopping_rounds="
            f"{strategy.stopping_rounds}): the moving average of {name} over the last {strategy.stopping_rounds} "
            f"did not improve by stopping_tolerance={strategy.stopping_tolerance:g} on the best before them")
