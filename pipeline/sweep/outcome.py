"""What one trial's run comes back as: :class:`TrialOutcome`.

The runner makes one per trial on the worker; it crosses Dask/Prefect pickling to the driver, where
:class:`~pipeline.sweep.collect.Collector` keeps it and turns it into a summary *row* (a dict, see
:mod:`pipeline.sweep.summary`) with :meth:`TrialOutcome.row`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

#: Every ``status`` a trial can end with; ``missing`` only in the driver (no result came back).
STATUSES = ("finished", "failed", "cached", "skipped", "missing")


@dataclass
class TrialOutcome:
    """One trial's result, small and picklable.

    Attributes
    ----------
    key, config_key : str
        The trial's and its configuration's keys (:class:`~pipeline.sweep.expand.Trial`).
    index : int
        Position in the sweep's expansion.
    seed : int or None
        ``model.seed`` when seeds are swept.
    rung : int
        Successive-halving rung (0 without halving).
    status : str
        One of :data:`STATUSES`.
    objective : float
        The objective metric; NaN unless the trial finished.
    metrics : dict of str to float
        The trial's numeric metrics.
    error : str
        Why it failed or was skipped ('' otherwise).
    seconds, log_seconds : float
        Training time; time spent on its MLflow child and artifacts.
    run_id : str or None
        The MLflow child it was logged to.
    epochs_run : int
        Scoring events recorded.
    pid : int or None
        Worker process that ran it.
    ended : float or None
        ``time.time()`` when it ended.
    table : str or None
        ``child_per: config``: artifact path, on the parent run, of the chunk table holding this result
        (:mod:`pipeline.sweep.results_table`); ``None`` until one is written.
    """

    key: str
    index: int
    config_key: str
    seed: int | None
    rung: int
    status: str
    objective: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    log_seconds: float = 0.0
    run_id: str | None = None
    epochs_run: int = 0
    pid: int | None = None
    ended: float | None = None
    table: str | None = None

    @classmethod
    def of(cls, trial, status: str, **values: Any) -> TrialOutcome:
        """The outcome of ``trial`` (a :class:`~pipeline.sweep.expand.Trial`) with ``status`` and ``values``."""
        return cls(key=trial.key, index=trial.index, config_key=trial.config_key, seed=trial.seed,
                   rung=trial.rung, status=status, **values)

    def row(self, axes: dict[str, Any]) -> dict[str, Any]:
        """The summary row: every field (``metrics`` shared, not copied) plus the swept ``axes``."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "axes": axes}
