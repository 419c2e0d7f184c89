"""Optuna's ask/tell loop as a sweep scheduler, the study's storage beside the tracking store, its plots.

The study is named after the sweep key and lives in ``optuna.db`` beside ``mlflow.db`` (a SQLite tracking
store or an HTTP tracking server seen from this driver), or in schema ``sweepnet_optuna`` of the same
Postgres database as MLflow, so a rerun of the same sweep loads the same study: finished Optuna trials are
not asked again, trials an interrupted run left RUNNING are run (their finished seeds are reused through the
trial keys) and told, and new ones are asked until the study holds ``strategy.n_trials``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable

from pipeline.sweep.expand import Trial
from pipeline.sweep.schedulers import SeedGroups
from pipeline.sweep.spec import Distribution, SweepSpec

#: The Postgres schema that holds Optuna's tables beside MLflow's (both use an ``alembic_version`` table).
PG_SCHEMA = "sweepnet_optuna"


def storage_url(tracking_uri: str, store_dir: str | Path) -> str:
    """Where the study lives for a sweep tracked at ``tracking_uri``."""
    if tracking_uri.startswith("postgresql"):
        _ensure_schema(tracking_uri)
        sep = "&" if "?" in tracking_uri else "?"
        return f"{tracking_uri}{sep}options=-csearch_path%3D{PG_SCHEMA}"
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri[len("sqlite:///"):].split("?")[0]).parent
    else:  # an HTTP tracking server: the study stays with the driver, which alone asks and tells
        folder = Path(store_dir)
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def _ensure_schema(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
    finally:
        engine.dispose()


def study_name(spec: SweepSpec, key: str) -> str:
    """One study per sweep key: the same spec and data resume the same study."""
    return f"{spec.name}-{key}"


def _encode(value: Any) -> Any:
    """Optuna's categorical choices are scalars: other values (e.g. hidden sizes [64, 32]) go as JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def distributions(spec: SweepSpec) -> dict[str, Any]:
    """Optuna distributions of the swept axes (the seed axis excluded: seeds are run for every configuration)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, values in sorted(spec.space.items()):
        if name == "model.seed":
            continue
        if isinstance(values, Distribution):
            if values.uniform is not None:
                out[name] = FloatDistribution(*values.uniform)
            elif values.loguniform is not None:
                out[name] = FloatDistribution(*values.loguniform, log=True)
            elif values.int_range is not None:
                out[name] = IntDistribution(*values.int_range)
            else:
                out[name] = CategoricalDistribution([_encode(v) for v in values.choice])
        else:
            out[name] = CategoricalDistribution([_encode(v) for v in values])
    return out


def decode(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's params back to the sweep's axis values."""
    point = {}
    for name, value in params.items():
        values = spec.space[name]
        choices = values.choice if isinstance(values, Distribution) else values
        if isinstance(choices, (list, tuple)):
            value = next((c for c in choices if _encode(c) == value), value)
        point[name] = value
    return point


def make_sampler(spec: SweepSpec, resumed_at: int = 0):
    """The sampler ``strategy.sampler`` names, seeded with ``strategy.seed``; a study resumed with
    ``resumed_at`` trials gets a seed derived from both (the same seed would ask the first trials' points again)."""
    import optuna
    from numpy.random import SeedSequence

    kinds = {"tpe": optuna.samplers.TPESampler, "cmaes": optuna.samplers.CmaEsSampler,
             "random": optuna.samplers.RandomSampler, "nsga2": optuna.samplers.NSGAIISampler}
    seed = spec.strategy.seed if not resumed_at else int(
        SeedSequence([spec.strategy.seed, resumed_at]).generate_state(1)[0] % (2**31 - 1))
    return kinds[spec.strategy.sampler](seed=seed)


def open_study(spec: SweepSpec, storage: str, name: str):
    """Create or load the sweep's study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [o.direction for o in spec.objectives or [spec.objective]]
    study = optuna.create_study(storage=storage, study_name=name, sampler=make_sampler(spec),
                                directions=directions, load_if_exists=True)
    if study.trials:  # resumed: go on from here, not from the first trials' draws
        study.sampler = make_sampler(spec, resumed_at=len(study.trials))
    if spec.objectives and not study.metric_names:
        with warnings.catch_warnings():  # marked experimental
            warnings.simplefilter("ignore")
            study.set_metric_names([o.metric for o in spec.objectives])
    return study


class OptunaScheduler:
    """Ask a batch sized to the free slots, tell each configuration once all its seeds are in, ask more.

    Parameters
    ----------
    study : optuna.Study
    spec : SweepSpec
    make_trials : callable (point, optuna trial number) -> list of Trial
        The trials (one per seed) of a configuration; raises ``ValueError`` for an invalid configuration.
    slots : int
        Configurations in flight at most.
    """

    def __init__(self, study, spec: SweepSpec, make_trials: Callable[[dict, int], list[Trial]], slots: int) -> None:
        self.study, self.spec, self.make_trials, self.slots = study, spec, make_trials, max(1, slots)
        self.groups = SeedGroups(spec.strategy.aggregate, tuple(o.metric for o in spec.objectives))
        self.dists = distributions(spec)
        self.n_trials = spec.strategy.n_trials
        #: keys of trials of configurations Optuna was told about: never run again, read back
        self.settled: set[str] = set()

    def initial(self) -> list[Trial]:
        """The trials of configurations an interrupted run left unfinished, the finished ones (their results
        come back from the tracking store), then new asks for the free slots."""
        from optuna.trial import TrialState

        out: list[Trial] = []
        for frozen in self.study.get_trials(deepcopy=False):
            trials = self._trials_of(frozen.params, frozen.number)
            if frozen.state in (TrialState.RUNNING, TrialState.WAITING) and trials is not None:
                self.groups.start(frozen.number, trials)
            elif trials is not None:  # told already: its results (failed ones too) come from the store
                self.settled.update(t.key for t in trials)
            out += trials or []
        return out + self._ask()

    def on_results(self, rows: list[dict]) -> list[Trial]:
        from optuna.trial import TrialState

        for number, value in self.groups.complete(rows):
            if not isinstance(value, tuple) and math.isnan(value):
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, list(value) if isinstance(value, tuple) else value)
        return self._ask()

    def _trials_of(self, params: dict[str, Any], number: int) -> list[Trial] | None:
        try:
            return self.make_trials(decode(self.spec, params), number)
        except ValueError:
            return None

    def _ask(self) -> list[Trial]:
        from optuna.trial import TrialState

        out: list[Trial] = []
        while self.groups.in_flight < self.slots and len(self.study.get_trials(deepcopy=False)) < self.n_trials:
            trial = self.study.ask(self.dists)
            trials = self._trials_of(trial.params, trial.number)
            if trials is None:  # the training config refuses this point (e.g. an invalid combination)
                self.study.tell(trial.number, state=TrialState.FAIL)
                continue
            self.groups.start(trial.number, trials)
            out += trials
        return out


def write_study(study, out: Path) -> list[str]:
    """The study's trials (``optuna_trials.csv``), optimisation history and parameter importances (PNG,
    Optuna's matplotlib backend) in ``out``; returns what it wrote and why a plot is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    written = []
    study.trials_dataframe().to_csv(out / "optuna_trials.csv", index=False)
    written.append("optuna_trials.csv")
    plots = {"optuna_history.png": ovm.plot_optimization_history,
             "optuna_importances.png": ovm.plot_param_importances}
    if len(study.directions) > 1:
        plots = {"pareto_front.png": ovm.plot_pareto_front}
        (out / "pareto_front.md").write_text(pareto_table(study))
        written.append("pareto_front.md")
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # the matplotlib backend is marked experimental
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(out / name, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(name)
        except Exception as err:  # noqa: BLE001 - e.g. importances need two finished trials with varied params
            written.append(f"{name}: not drawn ({type(err).__name__}: {err})")
    return written


def pareto_table(study) -> str:
    """The Pareto-optimal configurations of a multi-objective study as a Markdown table (seed means)."""
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    best = sorted(study.best_trials, key=lambda t: t.values)
    params = sorted({k for t in best for k in t.params})
    lines = ["| optuna trial | " + " | ".join(list(names) + params) + " |", "|---" * (1 + len(names) + len(params)) + "|"]
    for t in best:
        cells = [f"{v:.6g}" for v in t.values] + [str(t.params.get(k)) for k in params]
        lines.append(f"| {t.number} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
