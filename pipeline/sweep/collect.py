"""Collect chunk outcomes in the driver; log per-configuration children; write the sweep summary.

``child_per: config``: each chunk's per-trial results are one Parquet table on the parent run
(:mod:`pipeline.sweep.results_table`, written by the worker, or here when its upload failed). A configuration
whose seeds are all in gets one child (aggregate metrics over its seeds, tags naming the tables that hold its
per-seed rows), logged by a small thread pool (:data:`WRITERS`) so the drain loop never waits on MLflow;
:meth:`Collector.rows` waits for them. A child or table that cannot be logged is printed, tagged on the parent
(``sweepnet.logging_errors``) and returned by :func:`finish` (``logging_errors``); the sweep goes on.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from pipeline import model_logging, tracking, tracking_tables, ui_links, version
from pipeline.sweep import champion, continuation, results_table, summary, topk
from pipeline.sweep.driver import SweepPlan, config_child_key, release_lease
from pipeline.sweep.expand import Trial
from pipeline.sweep.outcome import TrialOutcome
from pipeline.sweep.progress import Progress
from pipeline.sweep.runner import trial_tags

_SEED_COLS = ["seed", "key", "status", "objective", "epochs_run", "seconds", "error"]
#: Configuration children (and fallback chunk tables) logged at once, in threads beside the drain loop.
WRITERS = 4
#: parent run id -> what could not be logged in this process (read and cleared by :func:`finish`).
_ERRORS: dict[str, list[str]] = {}
_ERRORS_LOCK = threading.Lock()
#: (tracking URI, experiment, dataset digest) whose dataset row a configuration child of this process created
_DATASETS: set[tuple[str, str, str]] = set()
_DATASETS_LOCK = threading.Lock()


class Collector:
    """Outcomes of the current rung as they arrive; progress; census children when a config completes."""

    def __init__(self, plan: SweepPlan, pending: list[list[Trial]] | None = None,
                 stream: IO | None = None, every: float = 1.0) -> None:
        self.plan = plan
        self.outcomes: dict[str, TrialOutcome] = {}
        self.members: dict[str, list[Trial]] = {}
        for t in plan.trials:
            self.members.setdefault(t.config_key, []).append(t)
        label = plan.spec.name + (f" rung {plan.rung}" if plan.spec.halving else "")
        self.progress = Progress(len(plan.trials), plan.spec.objective.metric, plan.spec.objective.direction,
                                 stream, every, label)
        if pending is not None:  # trials finished by an earlier run count as done from the start
            self.progress.done = self.progress.cached = len(plan.trials) - sum(map(len, pending))
        self.logged: set[str] = set()  # configurations whose child is submitted
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[tuple[str, Future]] = []
        self._tables: dict[str, Future] = {}  # trial key -> the driver's upload of its table (worker's failed)

    def add(self, outcomes: list[TrialOutcome]) -> None:
        """Record a chunk's outcomes; in ``child_per: config`` mode write the chunk's table if its worker could
        not, and queue a child for every configuration that is complete (logged in the background)."""
        for o in outcomes:
            self.outcomes[o.key] = o
        self.progress.update(outcomes)
        if self.plan.spec.child_per != "config":
            return
        unwritten = [o for o in outcomes if o.table is None]
        if unwritten:  # the worker's upload failed, or the chunk was lost: the driver writes the table
            path = results_table.chunk_path(unwritten)
            job = self._submit(f"result table {path}", results_table.write_chunk, self.plan.ctx, unwritten)
            self._tables.update((o.key, job) for o in unwritten)
        for ck in sorted({o.config_key for o in outcomes}):
            if ck not in self.logged and all(t.key in self.outcomes for t in self.members[ck]):
                self.logged.add(ck)
                members = list(self.members[ck])
                # after the tables of its rows the driver writes (submitted earlier: started first, no deadlock)
                after = {id(f): f for f in (self._tables.get(t.key) for t in members) if f is not None}
                self._submit(f"configuration child {ck} ({members[0].axes})", _after, list(after.values()),
                             log_config_child, self.plan, members, [self.outcomes[t.key] for t in members])

    def _submit(self, what: str, fn, *args) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="config-child")
        job = self._pool.submit(fn, *args)
        self._jobs.append((what, job))
        return job

    def flush(self) -> list[str]:
        """Wait for every queued child and table; return (and record for :func:`finish`) what failed."""
        errors = []
        for what, job in self._jobs:
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - one unlogged configuration never kills the sweep
                errors.append(f"{what} not logged: {type(err).__name__}: {str(err)[:500]}")
        self._jobs, self._tables = [], {}
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for e in errors:
            print(f"sweep {self.plan.spec.name!r}: {e}", file=sys.stderr, flush=True)
        if errors:
            with _ERRORS_LOCK:
                _ERRORS.setdefault(self.plan.ctx.parent_run_id, []).extend(errors)
        return errors

    def extend(self, trials: list[Trial]) -> None:
        """Trials an adaptive scheduler started after this collector was made (``pipeline.sweep.feed``)."""
        self.plan = replace(self.plan, trials=self.plan.trials + list(trials))
        for t in trials:
            self.members.setdefault(t.config_key, []).append(t)
        self.progress.total += len(trials)

    def mark_lost(self, trials: list[Trial], error: str) -> None:
        """A chunk whose task failed for good (e.g. KilledWorker): its trials count as failed."""
        lost = [t for t in trials if t.key not in self.outcomes]
        self.add([TrialOutcome.of(t, "failed", error=error) for t in lost])
        if self.plan.spec.child_per == "trial":
            for t in lost:
                tracking.log_failure(self.plan.ctx, t.key, f"{self.plan.spec.name}-{t.index:05d}",
                                     t.config, trial_tags(t), error,
                                     datasets=[model_logging.dataset_input(t.config.get("data"), t.data_digest)])

    def rows(self) -> list[dict]:
        """One summary row per trial of the rung: this run's outcome, else what MLflow already holds
        (waits for the configuration children first: their run ids go in the rows)."""
        self.flush()
        # a chunk Dask re-ran after its worker died reports its trials as "cached" without metrics
        hollow = any(o.status == "cached" and not o.metrics for o in self.outcomes.values())
        known = stored_rows(self.plan) if hollow or len(self.outcomes) < len(self.plan.trials) else {}
        out = []
        for t in self.plan.trials:
            o = self.outcomes.get(t.key)
            if o is None or (o.status == "cached" and not o.metrics):
                stored = known.get(t.key)
                o = TrialOutcome.of(t, **stored) if stored else o or TrialOutcome.of(t, "missing", error="no result")
            out.append(_row(t, o))
        return out


def _after(jobs: list[Future], fn, *args):
    """``fn(*args)`` once ``jobs`` are done, failed or not (their errors are reported on their own)."""
    for job in jobs:
        job.exception()
    return fn(*args)


def _row(t: Trial, o: TrialOutcome) -> dict:
    return o.row({k: v for k, v in t.axes.items() if k != "model.seed"})


def stored_rows(plan: SweepPlan) -> dict[str, dict]:
    """What MLflow holds about earlier runs of this sweep: key -> :class:`TrialOutcome` fields
    (``status``, ``objective``, ``metrics``, ``run_id``, ``error``, maybe ``epochs_run``)."""
    ctx, objective = plan.ctx, plan.spec.objective.metric
    found: dict[str, dict] = {}
    tables: dict[tuple[str, str], list[dict]] | None = None  # (config key, rung) -> rows, read once if needed
    for run in tracking.children(plan.ctx):
        tags, status = run.data.tags, run.info.status
        if tags.get(tracking.TAG_KIND) == "config" and status == "FINISHED" and \
                tags.get(results_table.TAG_LAYOUT) == results_table.LAYOUT:
            if tables is None:
                tables = {}
                for row in results_table.read_tables(ctx).values():
                    tables.setdefault((row["config_key"], str(row["rung"])), []).append(row)
            for row in tables.get((tags.get(tracking.TAG_CONFIG), tags.get("sweepnet.rung", "0")), []):
                found[row["key"]] = _from_table(row, run.info.run_id)
        elif tags.get(tracking.TAG_KIND) == "config" and status == "FINISHED":  # older layout: seeds.csv
            text = tracking.read_artifact_text(ctx, run.info.run_id, "seeds.csv")
            for rec in csv.DictReader(io.StringIO(text)):
                found[rec["key"]] = _from_csv(rec, run.info.run_id, objective)
        elif tags.get(tracking.TAG_KIND) == "trial" and status in ("FINISHED", "FAILED"):
            key = tags.get(tracking.TAG_KEY)
            if status == "FINISHED" or key not in found:
                names = tags.get(tracking.TAG_METRICS)
                metrics = {k: v for k, v in run.data.metrics.items() if names is None or k in names.split(",")}
                found[key] = {"status": "cached" if status == "FINISHED" else "failed",
                              "objective": metrics.get(objective, math.nan) if status == "FINISHED" else math.nan,
                              "metrics": metrics, "run_id": run.info.run_id,
                              "error": tags.get(tracking.TAG_ERROR, "")}
    return found


def _from_csv(rec: dict, run_id: str, objective: str) -> dict:
    metrics = {k[2:]: float(v) for k, v in rec.items() if k.startswith("m_") and v not in ("", None)}
    status = "cached" if rec["status"] in summary.OK else rec["status"]
    return {"status": status, "objective": float(rec["objective"] or "nan"), "metrics": metrics,
            "run_id": run_id, "error": rec.get("error", ""), "epochs_run": int(rec["epochs_run"] or 0)}


def _from_table(row: dict, run_id: str) -> dict:
    status = "cached" if row["status"] in summary.OK else row["status"]
    objective = row["objective"]
    return {"status": status, "objective": math.nan if objective is None else float(objective),
            "metrics": row["metrics"], "run_id": run_id, "error": row.get("error") or "",
            "epochs_run": int(row.get("epochs_run") or 0)}


def seeds_csv(outcomes: list[TrialOutcome]) -> str:
    """The per-seed table of one configuration (one line per seed): the ``seeds.csv`` a configuration child
    carried before the chunk tables; :func:`stored_rows` still reads it from stores of that layout."""
    keys = sorted({k for o in outcomes for k in o.metrics})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_SEED_COLS + [f"m_{k}" for k in keys])
    for o in sorted(outcomes, key=lambda o: (o.seed is None, o.seed)):
        w.writerow([o.seed, o.key, o.status, o.objective, o.epochs_run, f"{o.seconds:.4f}",
                    o.error[:300].replace("\n", " ")] + [o.metrics.get(k, "") for k in keys])
    return buf.getvalue()


def log_config_child(plan: SweepPlan, trials: list[Trial], outcomes: list[TrialOutcome]) -> str | None:
    """One child for a configuration (census mode): aggregate metrics over its seeds; its per-seed rows are in the
    chunk tables its tag ``sweepnet.results_tables`` names (:mod:`pipeline.sweep.results_table`).

    Four requests: create (tags), one ``log_batch`` (params, metrics), ``log_inputs``, terminate. No lookup before
    or after: only the driver logs configuration children, once per configuration and run (``Collector.logged``);
    ``driver.pending_chunks`` left out those already logged, and the sweep's lease (``pipeline.sweep.lease``) keeps a
    second run of the same sweep out. When a table holding some of its rows could be written neither by the worker
    nor by the driver, the child carries them as ``seeds.csv`` (the older layout, still read)."""
    spec, first = plan.spec, trials[0]
    ok = [o.objective for o in outcomes if o.status in summary.OK and math.isfinite(o.objective)]
    name = spec.objective.metric
    metrics: dict[str, float] = {"n_seeds": len(outcomes), "n_failed": len(outcomes) - len(ok)}
    if ok:
        ok.sort()
        metrics.update({name: ok[len(ok) // 2], f"{name}_min": ok[0], f"{name}_max": ok[-1],
                        f"{name}_mean": sum(ok) / len(ok)})
    groups = summary.census_groups([_row(t, o) for t, o in zip(trials, outcomes)], spec)
    if groups and math.isfinite(groups[0]["share_solved"]):
        metrics["share_solved"] = groups[0]["share_solved"]
    config = {**first.config, "model": {k: v for k, v in first.config.get("model", {}).items() if k != "seed"}}
    axes = {k: v for k, v in first.axes.items() if k != "model.seed"}
    tags = {tracking.TAG_CONFIG: first.config_key, tracking.TAG_KIND: "config", "sweepnet.rung": first.rung,
            **{f"sweepnet.axis.{k}": v for k, v in axes.items()}, **version.source_tags()}
    label = " ".join(f"{k.split('.')[-1]}={v}" for k, v in axes.items())
    key = config_child_key(plan, first.config_key, [t.key for t in trials])  # trials: every member of the config
    tabled = all(o.table for o in outcomes)  # else (a table could not be written) the older layout: seeds.csv
    if tabled:
        tags[results_table.TAG_LAYOUT] = results_table.LAYOUT
        tags[results_table.TAG_TABLES] = results_table.pointer(o.table for o in outcomes)
    status = "FINISHED" if ok else "FAILED"
    if not ok:
        tags[tracking.TAG_ERROR] = f"all {len(outcomes)} seeds failed; first: {outcomes[0].error[:2000]}"

    def log() -> str | None:
        with tempfile.TemporaryDirectory() as tmp:
            if not tabled:
                Path(tmp, "seeds.csv").write_text(seeds_csv(outcomes))
            return tracking.log_child(plan.ctx, key, f"{spec.name} {label}"[:240], config, tags, [], metrics,
                                      None if tabled else tmp, status=status, check_first=False, check_last=False,
                                      datasets=[model_logging.dataset_input(first.config.get("data"),
                                                                            first.data_digest)])

    run_id = _first_of_dataset((plan.ctx.tracking_uri, plan.ctx.experiment_id, first.data_digest), log)
    for o in outcomes:
        o.run_id = run_id
    return run_id


def _first_of_dataset(dataset: tuple[str, str, str], log):
    """``log()``, alone while no child of this process has logged ``dataset`` yet: children logged at once
    would all insert its row, and all but one get the store's unique-constraint error (then retry)."""
    if dataset not in _DATASETS:
        with _DATASETS_LOCK:
            if dataset not in _DATASETS:
                run_id = log()
                _DATASETS.add(dataset)
                return run_id
    return log()


def finish(plan: SweepPlan, rows: list[dict], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Summary files on the parent (and in ``out_dir``), best child tagged, parent closed.

    The parent ends FINISHED, or FAILED when no trial produced the objective (nothing to select); its
    tables and the ``sweepnet.failure_note`` tag (:func:`summary.failure_note`) then say why.

    Returns the counts (``trials``, ``trials_finished``, ``trials_failed``, ...), ``best`` row,
    ``failure_note``, ``selection_note`` (tagged ``sweepnet.selection_note`` too), ``logging_errors`` (configuration
    children or result tables that could not be logged, see :meth:`Collector.flush`), ``leaderboard_md``/``census_md``
    text and where to find the runs: ``tracking_uri``, ``experiment_id``, ``parent_run_id`` and the UI links
    ``experiment_url``/``parent_url`` (:mod:`pipeline.ui_links`, training view). The leaderboard and census go
    on the parent as CSV/Markdown files and as MLflow tables (``tables/leaderboard.json``, ``tables/census.json``).
    """
    ctx = plan.ctx
    with _ERRORS_LOCK:
        logging_errors = _ERRORS.pop(ctx.parent_run_id, [])
    stale = tracking.reconcile_stale(ctx)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="sweep-summary-"))
    result = summary.write_summary(out, rows, plan.spec, plan.axes)
    result["metrics"].update(continuation.saved_metrics(rows))  # halving: epochs not retrained
    best = result["best"]
    reused = dict(Counter(plan.reused[r["key"]] for r in rows if r["key"] in plan.reused))
    tags = {"sweepnet.trials_failed": result["metrics"]["trials_failed"], "sweepnet.stale_killed": stale,
            "sweepnet.reused": json.dumps(reused, sort_keys=True), **version.source_tags()}
    if plan.reuse_note:
        tags["sweepnet.reuse_note"] = plan.reuse_note
    # set even when empty (a rerun reopens the same parent); what is listed is not in MLflow: a rerun does it again
    tags["sweepnet.logging_errors"] = "; ".join(logging_errors)
    if plan.spec.halving is not None:
        tags["sweepnet.continuation"] = continuation.enabled(plan.spec)[1] or "on: promoted trials continue"
    for note in ("failure_note", "selection_note"):  # set even when empty: a rerun reopens the same parent
        tags[f"sweepnet.{note}"] = result[note]
    if best and best.get("run_id"):
        tags.update({"sweepnet.best_run_id": best["run_id"], "sweepnet.best_trial_key": best["key"]})
        tracking.tag_run(ctx, best["run_id"], {"sweepnet.best": "true"})
    if plan.options.artifacts and plan.spec.pictures_top_k:
        topk.draw_top(ctx, rows, plan.spec.objective.direction, plan.spec.pictures_top_k)
    champ = champion.publish(plan, best)  # models:/NAME@champion (or why not), before the parent closes
    tags.update(champ)
    tracking.log_parent(ctx, result["metrics"], tags, out)
    tracking_tables.log_tables(ctx, {f"tables/{name}.json": result["tables"][name] for name in ("leaderboard", "census")})
    tracking.close_sweep(ctx, failed=bool(result["failure_note"]))
    release_lease(plan)
    missing = sum(r["status"] == "missing" for r in rows)
    return {**result["metrics"], "trials_missing": missing, "logging_errors": logging_errors, "reused": reused, "reuse_note": plan.reuse_note,
            "best": best, "failure_note": result["failure_note"], "selection_note": result["selection_note"],
            "summary_dir": str(out), "champion": champ.get(champion.TAG_CHAMPION),
            "leaderboard_md": result["leaderboard_md"], "census_md": result["census_md"], "tables": result["tables"],
            "tracking_uri": ctx.tracking_uri, "experiment_id": ctx.experiment_id, "parent_run_id": ctx.parent_run_id,
            **ui_links.sweep_links(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id)}
