"""Deterministic expansion of a sweep into trials, trial keys and successive-halving rungs (chunks: ``chunking``).

The same spec and dataset always give the same trials in the same order with the same keys:
random draws come from ``np.random.Generator(SeedSequence(strategy.seed))``, never the global RNG.
A trial key is ``sha256(resolved trial config, seed, dataset digest, code version)[:16]``; it is what makes
a rerun skip finished work (of the same code: see ``pipeline.version``) and what stops a re-executed Dask task from logging a trial twice.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline import version
from pipeline.sweep.chunking import MAX_TASKS, auto_chunk_size, chunk, min_chunk_size, n_chunks
from pipeline.sweep.spec import Distribution, SweepSpec, base_config_dict

__all__ = ["MAX_TASKS", "Trial", "auto_chunk_size", "chunk", "config_key", "default_digest", "default_resolver",
           "draw_points", "expand", "grid_stop", "min_chunk_size", "n_chunks", "one_per_configuration", "promote",
           "trial_key", "waves"]  # the chunking names are pipeline.sweep.chunking's, kept here for callers


class _PerSeed:
    """One configuration's config (or axes) shared by the trials of all its seeds (see :class:`Trial`)."""

    __slots__ = ("value",)

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def __reduce__(self):
        return _PerSeed, (self.value,)


class _SeededField:
    """``Trial.config`` / ``Trial.axes``: a plain dict, or a :class:`_PerSeed` read with the trial's own seed."""

    def __init__(self, with_seed: Callable[[dict[str, Any], int], dict[str, Any]]) -> None:
        self.with_seed = with_seed

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError(self.name)  # a dataclass field without a default
        value = obj.__dict__[self.name]
        return self.with_seed(value.value, obj.seed) if type(value) is _PerSeed else value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.name] = value


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep (picklable; carries plain data only).

    Trials that differ only by seed share one config: ``config`` and ``axes`` then read as a new dict with
    the trial's ``model.seed`` each time (so 10^5 trials of 9 configurations hold 9 configs, and a chunk
    pickles each config once). Treat both as read-only: a write to the dict read is not kept.

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
    axes: dict[str, Any] = _SeededField(lambda axes, seed: {**axes, "model.seed": seed})
    config: dict[str, Any] = _SeededField(lambda config, seed: {**config, "model": {**config["model"], "seed": seed}})
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

    ``resolver`` runs once per configuration (its first seed); the other seeds share that resolved config
    with their own ``model.seed`` (no field of a training config is derived from the seed), unless the
    resolver changed the seed it was given, in which case every trial is resolved on its own.

    Raises
    ------
    ValueError
        When an override makes an invalid training config; the message names the trial's axes.
    """
    base = base_config_dict(spec)
    seeds = spec.seed_axis
    points = draw_points(spec) if points is None else points
    data: dict[str, tuple[str, dict]] = {}  # data block as JSON -> (digest, the block all trials share)
    trials: list[Trial] = []
    with _gc_paused():
        for point in points:
            trials += _point_trials(spec, base, point, seeds, len(trials), rung, resolver, digest, data)
    return trials


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector: trials make no reference cycles, and its full passes over
    the growing list of trials took half of the time of a 10^6-trial expansion."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _axes(spec: SweepSpec, point: dict[str, Any], seed: int | None, rung: int) -> dict[str, Any]:
    axes = dict(point)
    if seed is not None:
        axes["model.seed"] = seed
    if spec.halving is not None:
        axes["model.epochs"] = spec.halving.rungs[rung]
    return axes


def _point_trials(spec, base, point, seeds, start, rung, resolver, digest, data) -> list[Trial]:
    """The trials of one configuration, one per seed, sharing the first seed's resolved config."""
    def make(i: int, seed: int | None) -> Trial:
        return _make_trial(spec, base, _axes(spec, point, seed, rung), start + i, rung, resolver, digest, data)

    first = make(0, None if seeds is None else seeds[0])
    if seeds is None or len(seeds) == 1:
        return [first]
    key = _seed_keys(first, seeds)
    if key is None:
        return [first] + [make(i, seed) for i, seed in enumerate(seeds[1:], 1)]
    config, axes = _PerSeed(first.config), _PerSeed(first.axes)
    return [Trial(index=start + i, key=key(seed), config_key=first.config_key, seed=seed, axes=axes, config=config,
                  rung=rung, data_digest=first.data_digest) for i, seed in enumerate(seeds)]


#: Stands for the seed in the JSON text of a configuration's key payload (see ``_seed_keys``).
_SEED_MARK = "\x00seed\x00"


def _seed_keys(first: Trial, seeds: list[int]) -> Callable[[int], str] | None:
    """seed -> :func:`trial_key` of ``first``'s config with that seed, from one JSON text of the payload with
    the seed marked (the same bytes :func:`trial_key` hashes); ``None`` when that does not hold: a seed
    that is not a non-negative int, or a resolver that did not keep the seed it was given."""
    config = first.config
    if (not isinstance(config.get("model"), dict) or type(first.seed) is not int or first.seed != seeds[0]
            or any(type(s) is not int or s < 0 for s in seeds)):
        return None
    marked = {**config, "model": {**config["model"], "seed": _SEED_MARK}}
    payload = {"config": marked, "seed": _SEED_MARK, "data": first.data_digest, "code": version.code_version()}
    parts = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).split(json.dumps(_SEED_MARK))
    if len(parts) != 3:
        return None
    head, middle, tail = (part.encode() for part in parts)
    prefix = hashlib.sha256(head)  # most of the text: hashed once, copied per seed

    def key(seed: int) -> str:
        digits, sha = str(seed).encode(), prefix.copy()
        for part in (digits, middle, digits, tail):
            sha.update(part)
        return sha.hexdigest()[:16]
    return key if key(first.seed) == first.key else None


def _make_trial(spec, base, axes, index, rung, resolver, digest, data) -> Trial:
    from pipeline.config import get_dotted, set_dotted  # lazily: pipeline.config loads the datasets

    raw = copy.deepcopy(base)
    for dotted, value in axes.items():
        set_dotted(raw, dotted, copy.deepcopy(value))
    try:
        config = resolver(raw)
    except Exception as err:  # pydantic's ValidationError or the loader's ValueError
        raise ValueError(f"sweep {spec.name!r}: the trial with {axes} is not a valid config: {err}") from None
    block = config.get("data", {})
    data_tag = json.dumps(block, sort_keys=True, default=str)
    if data_tag not in data:
        data[data_tag] = (digest(block), block)
    data_digest, shared = data[data_tag]
    if "data" in config:
        config["data"] = shared  # an equal block: one object for every configuration on the same data
    seed = get_dotted(config, "model.seed")
    return Trial(
        index=index,
        key=trial_key(config, seed, data_digest, version.code_version()),
        config_key=config_key(config, data_digest),
        seed=seed,
        axes=axes,
        config=config,
        rung=rung,
        data_digest=data_digest,
    )


def one_per_configuration(trials: list[Trial], keep: int = 0) -> list[Trial]:
    """The first ``keep`` trials, then the first trial of every other configuration (``config_key``), in order:
    all that a check of what does not depend on the seed needs (10^5 trials may be a few configurations)."""
    seen = {t.config_key for t in trials[:keep]}
    out = list(trials[:keep])
    for t in trials[keep:]:
        if t.config_key not in seen:
            seen.add(t.config_key)
            out.append(t)
    return out


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
