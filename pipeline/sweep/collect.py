"""Collect chunk outcomes in the driver; log per-configuration children; write the sweep summary."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from pipeline import model_logging, tracking, tracking_tables, ui_links, version
from pipeline.sweep import champion, continuation, summary, topk
from pipeline.sweep.driver import SweepPlan, config_child_key, release_lease
from pipeline.sweep.expand import Trial
from pipeline.sweep.outcome import TrialOutcome
from pipeline.sweep.progress import Progress
from pipeline.sweep.runner import trial_tags

_SEED_COLS = ["seed", "key", "status", "objective", "epochs_run", "seconds", "error"]


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

    def add(self, outcomes: list[TrialOutcome]) -> None:
        """Record a chunk's outcomes; in ``child_per: config`` mode log every configuration that is complete."""
        for o in outcomes:
            self.outcomes[o.key] = o
        self.progress.update(outcomes)
        if self.plan.spec.child_per == "config":
            for ck in {o.config_key for o in outcomes}:
                if all(t.key in self.outcomes for t in self.members[ck]):
                    log_config_child(self.plan, self.members[ck], [self.outcomes[t.key] for t in self.members[ck]])

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
        """One summary row per trial of the rung: this run's outcome, else what MLflow already holds."""
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


def _row(t: Trial, o: TrialOutcome) -> dict:
    return o.row({k: v for k, v in t.axes.items() if k != "model.seed"})


def stored_rows(plan: SweepPlan) -> dict[str, dict]:
    """What MLflow holds about earlier runs of this sweep: key -> :class:`TrialOutcome` fields
    (``status``, ``objective``, ``metrics``, ``run_id``, ``error``, maybe ``epochs_run``)."""
    ctx, objective = plan.ctx, plan.spec.objective.metric
    found: dict[str, dict] = {}
    for run in tracking.children(plan.ctx):
        tags, status = run.data.tags, run.info.status
        if tags.get(tracking.TAG_KIND) == "config" and status == "FINISHED":
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


def seeds_csv(outcomes: list[TrialOutcome]) -> str:
    """The per-seed table of one configuration (one line per seed)."""
    keys = sorted({k for o in outcomes for k in o.metrics})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_SEED_COLS + [f"m_{k}" for k in keys])
    for o in sorted(outcomes, key=lambda o: (o.seed is None, o.seed)):
        w.writerow([o.seed, o.key, o.status, o.objective, o.epochs_run, f"{o.seconds:.4f}",
                    o.error[:300].replace("\n", " ")] + [o.metrics.get(k, "") for k in keys])
    return buf.getvalue()


def log_config_child(plan: SweepPlan, trials: list[Trial], outcomes: list[TrialOutcome]) -> str | None:
    """One child for a configuration: aggregate metrics over seeds + ``seeds.csv`` (census mode)."""
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
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "seeds.csv").write_text(seeds_csv(outcomes))
        status = "FINISHED" if ok else "FAILED"
        if not ok:
            tags[tracking.TAG_ERROR] = f"all {len(outcomes)} seeds failed; first: {outcomes[0].error[:2000]}"
        run_id = tracking.log_child(plan.ctx, key, f"{spec.name} {label}"[:240], config, tags, [], metrics,
                                    tmp, status=status,
                                    datasets=[model_logging.dataset_input(first.config.get("data"), first.data_digest)])
    for o in outcomes:
        o.run_id = run_id
    return run_id


def finish(plan: SweepPlan, rows: list[dict], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Summary files on the parent (and in ``out_dir``), best child tagged, parent closed.

    The parent ends FINISHED, or FAILED when no trial produced the objective (nothing to select); its
    tables and the ``sweepnet.failure_note`` tag (:func:`summary.failure_note`) then say why.

    Returns the counts (``trials``, ``trials_finished``, ``trials_failed``, ...), ``best`` row,
    ``failure_note``, ``selection_note`` (tagged ``sweepnet.selection_note`` too), ``leaderboard_md``/``census_md``
    text and where to find the runs: ``tracking_uri``, ``experiment_id``, ``parent_run_id`` and the UI links
    ``experiment_url``/``parent_url`` (:mod:`pipeline.ui_links`, training view). The leaderboard and census go
    on the parent as CSV/Markdown files and as MLflow tables (``tables/leaderboard.json``, ``tables/census.json``).
    """
    ctx = plan.ctx
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
    return {**result["metrics"], "trials_missing": missing, "reused": reused, "reuse_note": plan.reuse_note,
            "best": best, "failure_note": result["failure_note"], "selection_note": result["selection_note"],
            "summary_dir": str(out), "champion": champ.get(champion.TAG_CHAMPION),
            "leaderboard_md": result["leaderboard_md"], "census_md": result["census_md"], "tables": result["tables"],
            "tracking_uri": ctx.tracking_uri, "experiment_id": ctx.experiment_id, "parent_run_id": ctx.parent_run_id,
            **ui_links.sweep_links(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id)}
