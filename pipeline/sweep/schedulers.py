"""Driver-side schedulers of adaptive sweeps: which trials to run next, given the results so far.

A scheduler has two methods, and the flow only drives them (``pipeline.sweep.feed.Feed`` turns their
trials into chunks and feeds results back as chunks finish)::

    trials = scheduler.initial()            # the first trials, sized to the free worker slots
    more = scheduler.on_results(rows)       # summary rows of finished trials -> trials to start now

:class:`AshaScheduler` is asynchronous successive halving (ASHA, Li et al. 2020): a configuration is promoted
to the next rung as soon as it is in the top ``keep`` share of the results its rung has so far; no barrier
between rungs. :class:`~pipeline.sweep.optuna_search.OptunaScheduler` runs Optuna's ask/tell loop.
Both count a configuration complete when every one of its seeds has a result; its value is the mean (or
median) of its seeds' objective, and a failed seed fails the configuration (as ``expand.promote`` does).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np

from pipeline.sweep.expand import Trial

#: Statuses whose objective counts (the summary's ``OK``).
_OK = ("finished", "cached")


def point_tag(point: dict[str, Any]) -> str:
    """A configuration's identity across rungs: its swept axes without seed and epochs."""
    return json.dumps({k: v for k, v in point.items() if k not in ("model.seed", "model.epochs")},
                      sort_keys=True, default=str)


class SeedGroups:
    """Collects the seeds' results of each (configuration, rung) job and says when a job is complete."""

    def __init__(self, aggregate: str = "mean", metrics: tuple[str, ...] = ()) -> None:
        self.aggregate = aggregate
        #: several objectives: a job's value is a tuple, one aggregate per metric (read from the rows' metrics)
        self.metrics = tuple(metrics)
        self.job_of: dict[str, list] = {}  # trial key -> job ids (a configuration asked twice shares keys)
        self.waiting: dict[Any, set[str]] = {}  # job id -> trial keys without a result yet
        self.values: dict[Any, list[float]] = {}

    def start(self, job: Any, trials: list[Trial]) -> None:
        """Wait for the results of ``trials`` under ``job``."""
        self.waiting[job] = {t.key for t in trials}
        self.values[job] = []
        for t in trials:
            self.job_of.setdefault(t.key, []).append(job)

    def complete(self, rows: list[dict]) -> list[tuple[Any, float]]:
        """Record ``rows``; the jobs they completed, each with its value (NaN when a seed failed; a tuple per
        ``metrics`` when several objectives are tracked)."""
        done = []
        for r in rows:
            value = self._value(r)
            for job in self.job_of.pop(r["key"], []):
                self.waiting[job].discard(r["key"])
                self.values[job].append(value)
                if not self.waiting[job]:
                    done.append(self._close(job))
        return done

    def _value(self, row: dict) -> Any:
        ok = row["status"] in _OK
        if not self.metrics:
            return float(row["objective"]) if ok and math.isfinite(row["objective"]) else math.nan
        vals = tuple(float(row.get("metrics", {}).get(m, math.nan)) if ok else math.nan for m in self.metrics)
        return vals if all(math.isfinite(v) for v in vals) else math.nan

    def _close(self, job: Any) -> tuple[Any, Any]:
        del self.waiting[job]
        vals = self.values[job]
        if any(not isinstance(v, tuple) and math.isnan(v) for v in vals):
            return job, math.nan
        agg = np.median(np.array(vals, dtype=float), axis=0) if self.aggregate == "median" else \
            np.mean(np.array(vals, dtype=float), axis=0)
        return job, tuple(float(v) for v in agg) if self.metrics else float(agg)

    @property
    def in_flight(self) -> int:
        return len(self.waiting)


class AshaScheduler:
    """Asynchronous successive halving over a fixed list of configurations.

    Parameters
    ----------
    points : list of dict
        The configurations (swept axes without seed and epochs), in the order they start.
    n_rungs : int
        How many rungs; rung ``r`` trains ``halving.rungs[r]`` epochs.
    keep : float
        Share of a rung's results so far that may be promoted (``floor(n * keep)`` of ``n``).
    make_trials : callable (point, rung) -> list of Trial
        The trials (one per seed) of a configuration at a rung.
    slots : int
        How many jobs (configuration at a rung) may run at once.
    minimize : bool
        Direction of the objective.
    """

    def __init__(self, points: list[dict[str, Any]], n_rungs: int, keep: float,
                 make_trials: Callable[[dict, int], list[Trial]], slots: int, minimize: bool = True,
                 aggregate: str = "mean") -> None:
        self.points, self.n_rungs, self.keep = list(points), n_rungs, keep
        self.make_trials, self.slots, self.sign = make_trials, max(1, slots), 1.0 if minimize else -1.0
        self.next_point = 0
        self.results: list[dict[str, float]] = [{} for _ in range(n_rungs)]  # rung -> tag -> value
        self.promoted: list[set[str]] = [set() for _ in range(n_rungs)]
        self.point_of = {point_tag(p): p for p in self.points}
        self.groups = SeedGroups(aggregate)
        self.log: list[tuple[str, int]] = []  # (tag, rung) in the order jobs started

    def initial(self) -> list[Trial]:
        return self._fill()

    def on_results(self, rows: list[dict]) -> list[Trial]:
        for (tag, rung), value in self.groups.complete(rows):
            self.results[rung][tag] = value
        return self._fill()

    def promotable(self, rung: int) -> list[str]:
        """Configurations of ``rung`` in its top ``floor(n * keep)`` so far and not promoted yet, best first."""
        scored = self.results[rung]
        ranked = sorted((t for t in scored if math.isfinite(scored[t])), key=lambda t: self.sign * scored[t])
        top = ranked[: math.floor(len(scored) * self.keep)]
        return [t for t in top if t not in self.promoted[rung]]

    def next_job(self) -> tuple[str, int] | None:
        """ASHA's get_job: a promotion from the highest rung that has one, else a new configuration."""
        for rung in range(self.n_rungs - 2, -1, -1):
            candidates = self.promotable(rung)
            if candidates:
                self.promoted[rung].add(candidates[0])
                return candidates[0], rung + 1
        if self.next_point < len(self.points):
            self.next_point += 1
            return point_tag(self.points[self.next_point - 1]), 0
        return None

    def _fill(self) -> list[Trial]:
        out: list[Trial] = []
        while self.groups.in_flight < self.slots:
            job = self.next_job()
            if job is None:
                break
            trials = self.make_trials(self.point_of[job[0]], job[1])
            self.groups.start(job, trials)
            self.log.append(job)
            out += trials
        return out
