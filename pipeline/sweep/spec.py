"""Sweep specification: a base training config plus a search space, validated once.

A sweep file is YAML::

    name: xor-init-census
    base: ../configs/xor.yaml          # path relative to this file, or an inline config mapping
    objective: {metric: train_MSE, direction: minimize}   # a key of TrainResult.metrics; valid_* needs
                                       # (a list of them is multi-objective: Optuna nsga2/tpe/random;)
                                       # data.valid_fraction > 0; test_* is refused unless select_on_test: true
    strategy: {kind: Cartesian}        # or {kind: RandomDiscrete, max_models: 20, seed: 7}, or
                                       # {kind: Optuna, sampler: tpe, n_trials: 40, seed: 7, max_concurrent: 2}
    seeds: 20                          # or an explicit list [0, 1, 5]; the initialisation axis
    space:
      model.hidden: [[2], [3], [4]]                # grid list
      model.initial_weight_scale: [0.01, 0.1, 1.0]
      model.rate: {loguniform: [1.0e-4, 1.0e-1]}   # RandomDiscrete only
      model.epochs: {int: [10, 100]}
      model.activation: {choice: [Tanh, Rectifier]}
    halving: {rungs: [20, 60, 200], keep: 0.34}   # optional successive halving over model.epochs; promoted
                                       # configurations continue from their checkpoint (continue: false: retrain);
                                       # mode: async promotes as results arrive (ASHA), sync (default) per rung
    child_per: trial                   # or config: one MLflow child per configuration + per-chunk tables
    census: {metric: train_MSE, solved_below: 0.05}   # "solved"; "reaches best" = within best_atol
    log_model: all                     # MLflow model per child: all | best | none (default: all; best for
                                       # censuses: child_per: config or CENSUS_SEEDS+ seeds)
    pictures_top_k: 10                 # learning curve + feature picture drawn at summary time for the
                                       # k best children (0: none); every child keeps its history and weights

h2o.grid semantics: ``Cartesian`` enumerates every combination of the lists; ``RandomDiscrete`` draws
``max_models`` distinct configurations (each is then trained once per seed) and stops launching trials
after ``max_runtime_secs``. ``Optuna`` runs Optuna's ask/tell loop with ``sampler`` (tpe, cmaes, random,
nsga2) for ``n_trials`` configurations, at most ``max_concurrent`` in flight (default: two per worker); a
configuration's value is the ``aggregate`` (mean or median) of its seeds' objective. Unlike h2o, a swept seed (``seeds`` or ``model.seed`` in ``space``) is never
overridden.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DIST_KINDS = ("uniform", "loguniform", "choice", "int_range")


#: A sweep with at least this many seeds per configuration is a census: it logs only the best child's model.
CENSUS_SEEDS = 5


class Distribution(BaseModel):
    """A random distribution over one field: exactly one of the four kinds."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    choice: tuple[Any, ...] | None = None
    int_range: tuple[int, int] | None = Field(default=None, alias="int")

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [k for k in _DIST_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a distribution needs exactly one of uniform, loguniform, choice, int; got {given or 'none'}; "
                "write e.g. {loguniform: [1.0e-4, 1.0e-1]}"
            )
        lo_hi = self.uniform or self.loguniform or self.int_range
        if lo_hi is not None and not lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"distribution bounds {list(lo_hi)} must satisfy low <= high; swap them")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(
                f"loguniform bounds {list(self.loguniform)} must be > 0; use uniform for ranges touching 0"
            )
        if self.choice is not None and len(self.choice) == 0:
            raise ValueError("choice needs at least one value, e.g. {choice: [Tanh, Rectifier]}")
        return self

    @property
    def kind(self) -> str:
        """Name of the distribution kind that is set."""
        return next(k for k in _DIST_KINDS if getattr(self, k) is not None)

    def sample(self, rng) -> Any:
        """Draw one value with the numpy ``Generator`` ``rng``."""
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            lo, hi = self.loguniform
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.int_range is not None:
            return int(rng.integers(self.int_range[0], self.int_range[1], endpoint=True))
        return self.choice[int(rng.integers(len(self.choice)))]


class Objective(BaseModel):
    """The metric that ranks trials (a key of ``TrainResult.metrics``) and its direction."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    metric: str = "final_objective"
    direction: Literal["minimize", "maximize"] = "minimize"


class Strategy(BaseModel):
    """h2o.grid search criteria."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["Cartesian", "RandomDiscrete", "Optuna"] = "Cartesian"
    max_models: int | None = Field(default=None, gt=0)
    max_runtime_secs: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    #: h2o's search_criteria early stopping: configurations run in waves of ``stopping_rounds`` in draw
    #: order; no new wave starts once the moving average of ``stopping_rounds`` configurations' metric
    #: has not improved by ``stopping_tolerance`` (relative) on the best before them. 0 = off.
    stopping_rounds: int = Field(default=0, ge=0)
    stopping_metric: str = Field(default="AUTO", min_length=1)  # AUTO: the objective; else a metrics key
    stopping_tolerance: float = Field(default=0.001, ge=0)
    #: kind Optuna: the sampler, how many configurations, how many in flight (None: two per worker) and
    #: how a configuration's seeds make its value
    sampler: str | None = None
    n_trials: int | None = Field(default=None, gt=0)
    max_concurrent: int | None = Field(default=None, gt=0)
    aggregate: Literal["mean", "median"] = "mean"

    @model_validator(mode="after")
    def _random_needs_bound(self) -> Strategy:
        if self.kind == "Optuna":
            from pipeline.sweep.spec_rules import check_optuna  # after this module is built

            check_optuna(self)
        elif self.sampler is not None or self.n_trials is not None or self.max_concurrent is not None:
            raise ValueError(
                f"strategy.sampler/n_trials/max_concurrent belong to kind Optuna, but strategy.kind is {self.kind}; "
                "set kind: Optuna or remove them"
            )
        if self.kind == "RandomDiscrete" and self.max_models is None:
            raise ValueError(
                "strategy.kind RandomDiscrete needs strategy.max_models (how many configurations to draw), "
                "e.g. {kind: RandomDiscrete, max_models: 20}"
            )
        if self.stopping_rounds and self.kind != "RandomDiscrete":
            raise ValueError(
                f"strategy.stopping_rounds = {self.stopping_rounds} stops a RandomDiscrete search (h2o's "
                "search_criteria); a Cartesian grid runs every combination: set kind: RandomDiscrete or remove it"
            )
        return self


class Halving(BaseModel):
    """Successive halving: every configuration trains ``rungs[0]`` epochs, the best ``keep`` go on.

    ``continue`` (default true): a promoted configuration continues from its previous rung's checkpoint
    instead of retraining from epoch 0 (``pipeline.sweep.continuation``); false retrains every rung.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)
    rungs: tuple[int, ...] = Field(min_length=2)
    keep: float = Field(default=0.5, gt=0, lt=1)
    #: sync: a rung waits for all its configurations; async (ASHA): promote as soon as a configuration is
    #: in the top ``keep`` share of the results its rung has so far
    mode: Literal["sync", "async"] = "sync"
    continue_: bool = Field(default=True, alias="continue")

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, rungs: tuple[int, ...]) -> tuple[int, ...]:
        if any(r <= 0 for r in rungs) or list(rungs) != sorted(set(rungs)):
            raise ValueError(
                f"halving.rungs {list(rungs)} must be strictly increasing positive epoch counts, "
                "e.g. [20, 60, 200]"
            )
        return rungs


class Census(BaseModel):
    """How to judge a seed "solved" in initialisation census summaries."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    metric: str | None = None
    solved_below: float | None = None
    solved_above: float | None = None
    best_rtol: float = Field(default=0.0, ge=0)
    best_atol: float = Field(default=1e-3, ge=0)


class SweepSpec(BaseModel):
    """A validated sweep: base config + search space + strategy + objective.

    ``base`` is either an inline training-config mapping or a path (already resolved to absolute by
    :func:`load_sweep`). ``chunk_size`` is ``"auto"`` (sized so one Prefect task carries about
    ``chunk_seconds`` of training) or a fixed number of trials per task.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    base: dict[str, Any] | str
    space: dict[str, list[Any] | Distribution] = Field(default_factory=dict)
    seeds: int | list[int] | None = None
    strategy: Strategy = Strategy()
    objective: Objective = Objective()
    #: multi-objective (Optuna): every objective in order; ``objective`` is the first (it ranks the leaderboard)
    objectives: tuple[Objective, ...] = ()
    halving: Halving | None = None
    child_per: Literal["trial", "config"] = "trial"
    chunk_size: Literal["auto"] | int = "auto"
    chunk_seconds: float = Field(default=20.0, gt=0)
    census: Census = Census()
    experiment: str | None = None
    #: rank by a ``test_*`` metric knowingly (model selection on the test set); the summary then says so
    select_on_test: bool = False
    log_model: Literal["best", "all", "none"] | None = None
    #: children that get a learning curve and a feature picture, drawn at summary time (``pipeline.sweep.topk``)
    pictures_top_k: int = Field(default=10, ge=0)

    @property
    def model_logging(self) -> str:
        """``log_model`` or its default: ``best`` for censuses (``child_per: config`` or ``CENSUS_SEEDS``+
        seeds, where one model per seed is mostly noise), ``all`` otherwise."""
        if self.log_model is not None:
            return self.log_model
        seeds = self.seed_axis
        return "best" if self.child_per == "config" or (seeds is not None and len(seeds) >= CENSUS_SEEDS) else "all"

    @model_validator(mode="before")
    @classmethod
    def _objective_list(cls, raw: Any) -> Any:
        """``objective: [{metric, direction}, ...]`` is several objectives; the first ranks the leaderboard."""
        if isinstance(raw, dict) and isinstance(raw.get("objective"), list):
            if not raw["objective"] or raw.get("objectives"):
                raise ValueError("objective is an empty list; give one or more {metric: ..., direction: ...}")
            raw = {**raw, "objective": raw["objective"][0], "objectives": list(raw["objective"])}
        return raw

    @field_validator("space", mode="before")
    @classmethod
    def _space_values(cls, space: Any) -> Any:
        if not isinstance(space, dict):
            raise TypeError(f"space must be a mapping of dotted field -> list or distribution, got {space!r}")
        for field, values in space.items():
            if not isinstance(field, str) or not field.replace("_", "a").replace(".", "a").isalnum():
                raise ValueError(f"space key {field!r} must be a dotted field name such as model.hidden")
            if isinstance(values, list) and len(values) == 0:
                raise ValueError(f"space.{field} is an empty list; give at least one value")
            if not isinstance(values, (list, dict)):
                raise ValueError(
                    f"space.{field} = {values!r} must be a list of values (grid) or a distribution "
                    "such as {uniform: [0, 1]}; wrap a single value in a list"
                )
        return space

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int] | None) -> int | list[int] | None:
        if isinstance(seeds, int) and seeds <= 0:
            raise ValueError(f"seeds = {seeds} must be a positive count or a list of seeds, e.g. seeds: 20")
        if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
            raise ValueError(f"seeds = {seeds} must be a non-empty list of distinct non-negative integers")
        return seeds

    @field_validator("chunk_size")
    @classmethod
    def _chunk(cls, chunk: Any) -> Any:
        if isinstance(chunk, int) and chunk <= 0:
            raise ValueError(f"chunk_size = {chunk} must be 'auto' or a positive number of trials per task")
        return chunk

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if "model.seed" in self.space and self.seeds is not None:
            raise ValueError(
                "seeds and space['model.seed'] both set the seed axis; keep one of them"
            )
        dists = [f for f, v in self.space.items() if isinstance(v, Distribution)]
        from pipeline.sweep.spec_rules import check_adaptive

        check_adaptive(self)
        if self.strategy.kind == "Cartesian" and dists:
            raise ValueError(
                f"space fields {dists} are random distributions but strategy.kind is Cartesian; "
                "use lists for a grid or set strategy: {kind: RandomDiscrete, max_models: N}"
            )
        metric = self.objective.metric
        if metric.startswith("test_") and not self.select_on_test:
            raise ValueError(
                f"objective.metric = {metric!r} ranks the trials and tags the best model by the test set (model "
                f"selection on test data); rank by a validation metric (objective.metric: 'valid_{metric[5:]}' "
                "with data.valid_fraction > 0 in the base config), or set select_on_test: true to do it knowingly"
            )
        if self.halving is not None and self.strategy.stopping_rounds:
            raise ValueError(
                f"strategy.stopping_rounds = {self.strategy.stopping_rounds} and halving both decide which "
                "configurations train on; keep one of them"
            )
        if self.halving is not None and "model.epochs" in self.space:
            raise ValueError(
                "halving.rungs sets model.epochs per rung, so model.epochs cannot also be in space; remove one"
            )
        return self

    @property
    def seed_axis(self) -> list[int] | None:
        """Explicit seed values, or ``None`` when the base config's seed is used unchanged."""
        from numpy.random import SeedSequence

        if self.seeds is None:
            return None
        if isinstance(self.seeds, list):
            return list(self.seeds)
        state = SeedSequence(self.strategy.seed).generate_state(self.seeds, dtype="uint32")
        return [int(s) % (2**31 - 1) for s in state]


def load_sweep(source: str | Path | dict[str, Any]) -> SweepSpec:
    """Read and validate a sweep YAML file (or mapping).

    A relative ``base`` path is resolved against the sweep file's directory.

    Raises
    ------
    FileNotFoundError
        When the sweep file or its base config does not exist.
    ValueError
        When a value is invalid; the message names the field, the value and the fix.
    """
    from pydantic import ValidationError

    from pipeline.config import read_yaml  # lazily: pipeline.config loads the datasets

    root = Path.cwd()
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"sweep file {str(path)!r} does not exist; pass the path of a sweep YAML")
        raw = read_yaml(path)
        root = path.resolve().parent
    else:
        raw = dict(source)
    if not isinstance(raw, dict):
        raise ValueError(f"a sweep file must hold a mapping at top level, got {type(raw).__name__}")
    if isinstance(raw.get("base"), str):
        base = Path(raw["base"])
        base = base if base.is_absolute() else root / base
        if not base.is_file():
            raise FileNotFoundError(
                f"base = {raw['base']!r} resolves to {str(base)!r}, which does not exist; "
                "give a path relative to the sweep file or an inline config mapping"
            )
        raw = {**raw, "base": str(base)}
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"invalid sweep spec: {_explain(err)}") from None


def _explain(err) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where or '<top>'}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(parts)


def base_config_dict(spec: SweepSpec) -> dict[str, Any]:
    """The base training config as a plain mapping (read from disk if ``base`` is a path)."""
    if isinstance(spec.base, dict):
        return dict(spec.base)
    from pipeline.config import read_yaml

    path = Path(spec.base)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"base config {spec.base!r} must hold a mapping, got {type(data).__name__}")
    source = data.get("data", {}).get("source") if isinstance(data.get("data"), dict) else None
    if isinstance(source, str) and not Path(source).is_absolute() and (path.parent / source).exists():
        # paths inside a config file are relative to that file (as in pipeline.config.load_config)
        data["data"] = {**data["data"], "source": str((path.parent / source).resolve())}
    return data
