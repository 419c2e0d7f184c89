"""Incremental fan-out of adaptive sweeps: a scheduler's trials as chunks, results fed back as chunks finish.

The flow submits what :meth:`Feed.take` returns, gives each finished chunk's outcomes to :meth:`Feed.add`
(as it would to a :class:`~pipeline.sweep.collect.Collector`) and submits again::

    feed = Feed(plan, scheduler_for(plan))
    submit(feed.take())
    for outcomes in as_they_finish():
        feed.add(outcomes)
        submit(feed.take())
    collect.finish(feed.plan, feed.rows())

Trials whose key already has a FINISHED child (an earlier run, or the same configuration asked twice)
are not run: their stored results go straight back to the scheduler.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline import tracking
from pipeline.sweep import continuation
from pipeline.sweep import expand as ex
from pipeline.sweep.collect import Collector, stored_rows
from pipeline.sweep.driver import SweepPlan
from pipeline.sweep.outcome import TrialOutcome
from pipeline.sweep.schedulers import AshaScheduler, point_tag

#: Trials of one rung get indexes from ``rung * RUNG_STRIDE`` on (run names stay unique across rungs).
RUNG_STRIDE = 100_000


def is_adaptive(plan: SweepPlan) -> bool:
    """Whether the plan runs through a scheduler (Optuna, or halving in async mode)."""
    halving = plan.spec.halving
    return plan.spec.strategy.kind == "Optuna" or (halving is not None and halving.mode == "async")


def _trial_maker(plan: SweepPlan, extra_key: str | None):
    """(point, number) -> the point's trials (one per seed) with unique indexes; the dataset digested once."""
    digests: dict[str, str] = {}
    n_seeds = len(plan.spec.seed_axis or [None])

    def digest(data: dict) -> str:
        tag = repr(sorted(data.items()))
        if tag not in digests:
            digests[tag] = ex.default_digest(data)
        return digests[tag]

    def make(point: dict[str, Any], number: int, rung: int = 0) -> list[ex.Trial]:
        trials = ex.expand(plan.spec, digest=digest, rung=rung, points=[point])
        extra = {extra_key: number} if extra_key else {}
        return [replace(t, index=rung * RUNG_STRIDE + number * n_seeds + i, extra=extra)
                for i, t in enumerate(trials)]
    return make


def scheduler_for(plan: SweepPlan):
    """The plan's scheduler: Optuna's ask/tell loop (the study beside the tracking store) or ASHA."""
    # default: two configurations per worker, one running and one queued, so a worker does not idle while the
    # driver tells, asks and submits (a Prefect task takes ~0.2 s to start)
    spec, slots = plan.spec, plan.spec.strategy.max_concurrent or 2 * plan.n_workers
    if spec.strategy.kind == "Optuna":
        from pipeline.sweep import optuna_search as opt

        storage = opt.storage_url(plan.ctx.tracking_uri, plan.store_dir)
        study = opt.open_study(spec, storage, opt.study_name(spec, plan.sweep_key))
        tracking.tag_run(plan.ctx, plan.ctx.parent_run_id, {"sweepnet.optuna_study": study.study_name})
        return opt.OptunaScheduler(study, spec, _trial_maker(plan, "optuna_trial"), slots)
    points = ex.draw_points(spec)
    make = _continuing(plan, _trial_maker(plan, None))
    index = {id(p): i for i, p in enumerate(points)}
    return AshaScheduler(points, len(spec.halving.rungs), spec.halving.keep,
                         lambda point, rung: make(point, index.get(id(point), 0), rung), slots,
                         minimize=spec.objective.direction == "minimize", aggregate="mean")


def _continuing(plan: SweepPlan, make):
    """ASHA's trials with checkpoint continuation (``pipeline.sweep.continuation``, as synchronous halving):
    rung 0 scores on the last rung's horizon and saves a checkpoint; a promotion continues each seed's trial
    of the rung before. Unchanged when ``halving.continue`` is false."""
    if not continuation.enabled(plan.spec)[0]:
        return make
    rungs = plan.spec.halving.rungs
    horizon, last = rungs[-1], len(rungs) - 1
    made: dict[tuple[str, int], list[ex.Trial]] = {}

    def cont(point: dict[str, Any], number: int, rung: int = 0) -> list[ex.Trial]:
        tag = point_tag(point)
        if rung == 0:
            trials = [replace(t, extra={**t.extra, **continuation.rung_extra(horizon, last > 0)})
                      for t in make(point, number, 0)]
        else:
            trials = [continuation.continue_trial(t, rungs[rung], rung=rung, horizon=horizon, checkpoint=rung < last)
                      for t in made[(tag, rung - 1)]]
        made[(tag, rung)] = trials
        return trials
    return cont


class Feed:
    """Drives a scheduler: queues its trials as chunks, collects outcomes, feeds results back."""

    def __init__(self, plan: SweepPlan, scheduler) -> None:
        self.scheduler = scheduler
        self.collector = Collector(replace(plan, trials=[]), pending=[])
        self.queue: list[list[ex.Trial]] = []
        self._admit(scheduler.initial())

    @property
    def plan(self) -> SweepPlan:
        """The plan with every trial started so far."""
        return self.collector.plan

    @property
    def outcomes(self) -> dict[str, TrialOutcome]:
        return self.collector.outcomes

    def take(self) -> list[list[ex.Trial]]:
        """The chunks to submit now."""
        out, self.queue = self.queue, []
        return out

    def add(self, outcomes: list[TrialOutcome]) -> None:
        self.collector.add(outcomes)
        self._admit(self.scheduler.on_results(self._rows(outcomes)))

    def mark_lost(self, trials: list[ex.Trial], error: str) -> None:
        known = set(self.outcomes)
        self.collector.mark_lost(trials, error)
        self._admit(self.scheduler.on_results(self._rows([self.outcomes[t.key] for t in trials
                                                           if t.key not in known])))

    def rows(self) -> list[dict]:
        return self.collector.rows()

    def _rows(self, outcomes: list[TrialOutcome]) -> list[dict]:
        return [o.row({}) for o in outcomes]

    def _admit(self, trials: list[ex.Trial]) -> None:
        """Queue ``trials`` (one chunk per configuration, split at the chunk size); trials with a stored
        result are answered at once from the tracking store, which may start more trials (bounded by
        the scheduler's budget)."""
        while trials:
            known = {t.key for t in self.plan.trials}
            fresh = list({t.key: t for t in trials if t.key not in known}.values())
            self.collector.extend(fresh)
            done = tracking.finished_keys(self.plan.ctx) if fresh else set()
            done |= {t.key for t in fresh} & getattr(self.scheduler, "settled", set())
            todo = [t for t in fresh if t.key not in done]
            groups: dict[str, list[ex.Trial]] = {}
            for t in todo:
                groups.setdefault(t.config_key, []).append(t)
            for members in groups.values():
                self.queue += ex.chunk(members, self.plan.chunk_size)
            answered = [t for t in trials if t.key in done or t.key in self.outcomes]
            if not answered:
                return
            stored = stored_rows(self.plan) if any(t.key not in self.outcomes for t in answered) else {}
            for t in answered:
                if t.key not in self.outcomes:
                    fields = stored.get(t.key) or {"status": "missing", "error": "no stored result"}
                    self.outcomes[t.key] = TrialOutcome.of(t, **fields)
                    self.collector.progress.update([self.outcomes[t.key]])
            trials = self.scheduler.on_results(self._rows([self.outcomes[t.key] for t in answered]))


def log_study(feed: Feed) -> None:
    """The adaptive search's own record on the parent: Optuna's trials and plots, or ASHA's job order.
    Best effort: a record that cannot be written is a warning and a parent tag, not a failed sweep."""
    try:
        _log_study(feed)
    except Exception as err:  # noqa: BLE001 - the trials and the leaderboard matter more than these files
        note = f"search record not written: {type(err).__name__}: {err}"
        print(f"sweep {feed.plan.spec.name!r}: {note}", flush=True)
        tracking.tag_run(feed.plan.ctx, feed.plan.ctx.parent_run_id, {"sweepnet.search_record_note": note[:4000]})


def _log_study(feed: Feed) -> None:
    import csv
    import tempfile
    from pathlib import Path

    ctx = feed.plan.ctx
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "search"
        study = getattr(feed.scheduler, "study", None)
        if study is not None:
            from pipeline.sweep.optuna_search import write_study

            notes = [n for n in write_study(study, out) if ":" in n]
            tags = {"sweepnet.optuna_plot_notes": "; ".join(notes)} if notes else {}
        else:
            out.mkdir()
            with open(out / "asha_jobs.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["order", "config", "rung"])
                w.writerows((i, tag, rung) for i, (tag, rung) in enumerate(feed.scheduler.log))
            tags = {}
        tracking.log_parent(ctx, {}, tags, out)
