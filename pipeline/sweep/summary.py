"""Sweep summary: a leaderboard sorted by the objective (h2o ``get_grid(sort_by=...)``), the
initialisation census per configuration, and the files that go on the parent run.

A *row* is one trial outcome as a dict (:meth:`pipeline.sweep.outcome.TrialOutcome.row`): its fields
(``key``, ``config_key``, ``seed``, ``rung``, ``status``, ``objective``, ``metrics``, ``run_id``, ...) plus
``axes`` (swept fields, seed excluded).
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from pipeline.sweep.spec import SweepSpec

OK = ("finished", "cached")


def _sign(direction: str) -> float:
    return 1.0 if direction == "minimize" else -1.0


def leaderboard(rows: Sequence[dict], direction: str) -> list[dict]:
    """Rows sorted best first: highest halving rung first, then by objective; failures last."""
    sign = _sign(direction)

    def order(r: dict) -> tuple:
        obj = r.get("objective", math.nan)
        good = r["status"] in OK and math.isfinite(obj)
        return (not good, -r.get("rung", 0), sign * obj if good else 0.0, r.get("key", ""))

    return sorted(rows, key=order)


def best_value(rows: Sequence[dict], direction: str) -> float:
    """Best finite objective among finished rows (NaN when none)."""
    vals = [r["objective"] for r in rows if r["status"] in OK and math.isfinite(r["objective"])]
    if not vals:
        return math.nan
    return min(vals) if direction == "minimize" else max(vals)


def _reaches(value: float, best: float, spec: SweepSpec) -> bool:
    tol = spec.census.best_rtol * abs(best) + spec.census.best_atol
    if spec.objective.direction == "minimize":
        return value <= best + tol
    return value >= best - tol


def _solved(row: dict, spec: SweepSpec) -> float:
    c = spec.census
    if c.solved_below is None and c.solved_above is None:
        return math.nan
    value = row["metrics"].get(c.metric or spec.objective.metric, math.nan)
    if not math.isfinite(value):
        return 0.0
    ok = (c.solved_below is None or value < c.solved_below) and (c.solved_above is None or value > c.solved_above)
    return 1.0 if ok else 0.0


def census_groups(rows: Sequence[dict], spec: SweepSpec) -> list[dict]:
    """Per configuration (axes without seed): seeds run, failures, share reaching the best objective,
    share solved (``census`` rule), and the spread of the final objective over seeds."""
    best = best_value(rows, spec.objective.direction)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["config_key"], []).append(r)
    out = []
    for members in groups.values():
        ok = [m for m in members if m["status"] in OK and math.isfinite(m["objective"])]
        vals = [m["objective"] for m in ok]
        solved = [_solved(m, spec) for m in members]
        out.append({
            "label": _axes_label(members[0]["axes"]),
            "axes": members[0]["axes"],
            "config_key": members[0]["config_key"],
            "rung": members[0].get("rung", 0),
            "n_seeds": len(members),
            "n_failed": len(members) - len(ok),
            "share_best": sum(_reaches(v, best, spec) for v in vals) / len(members) if math.isfinite(best) else 0.0,
            "share_solved": math.nan if all(math.isnan(s) for s in solved) else sum(solved) / len(members),
            "best": (min if spec.objective.direction == "minimize" else max)(vals) if vals else math.nan,
            "median": statistics.median(vals) if vals else math.nan,
            "mean": statistics.fmean(vals) if vals else math.nan,
            "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0 if vals else math.nan,
            "q25": _quantile(vals, 0.25),
            "q75": _quantile(vals, 0.75),
            "worst": (max if spec.objective.direction == "minimize" else min)(vals) if vals else math.nan,
            "values": vals,
        })
    sign = _sign(spec.objective.direction)
    return sorted(out, key=lambda g: (-g["rung"], -g["share_best"], sign * _finite(g["median"])))


def _finite(v: float) -> float:
    return v if math.isfinite(v) else math.inf


def _quantile(vals: Sequence[float], q: float) -> float:
    if not vals:
        return math.nan
    s = sorted(vals)
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _axes_label(axes: dict[str, Any]) -> str:
    return " ".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in axes.items()) or "base"


def format_value(v: Any) -> str:
    """A value as a short table cell or run-name part: floats to 4 significant digits, no spaces."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace(" ", "")


def leaderboard_table(rows: Sequence[dict], spec: SweepSpec, axes: Sequence[str]) -> tuple[list[str], list[list]]:
    """Header and body of the leaderboard (one line per trial)."""
    metric_keys = sorted({k for r in rows for k in r.get("metrics", {})} - {spec.objective.metric})
    header = ["rank", *axes, "seed", "rung", spec.objective.metric, *metric_keys, "status", "run_id", "key"]
    body = []
    for i, r in enumerate(leaderboard(rows, spec.objective.direction), start=1):
        body.append([
            i, *(format_value(r["axes"].get(a, "")) for a in axes), r.get("seed", ""), r.get("rung", 0),
            format_value(r["objective"]), *(format_value(r["metrics"].get(k, "")) for k in metric_keys),
            r["status"], r.get("run_id") or "", r["key"],
        ])
    return header, body


def census_table(groups: Sequence[dict], spec: SweepSpec) -> tuple[list[str], list[list]]:
    """Header and body of the census (one line per configuration)."""
    axes = sorted({a for g in groups for a in g["axes"]})
    header = [*axes, "rung", "n_seeds", "n_failed", "share_best", "share_solved",
              "best", "q25", "median", "q75", "worst", "std"]
    body = [[*(format_value(g["axes"].get(a, "")) for a in axes), g["rung"], g["n_seeds"], g["n_failed"],
             format_value(g["share_best"]), format_value(g["share_solved"]), *(format_value(g[k]) for k in
             ("best", "q25", "median", "q75", "worst", "std"))] for g in groups]
    return header, body


def markdown(header: Sequence[str], body: Sequence[Sequence], limit: int | None = None) -> str:
    """A GitHub Markdown table (first ``limit`` lines of ``body``)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    for row in body[:limit] if limit else body:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    if limit and len(body) > limit:
        lines.append(f"\n... {len(body) - limit} more rows in the CSV")
    return "\n".join(lines) + "\n"


def failure_note(rows: Sequence[dict], metric: str) -> str:
    """Why no trial produced the objective: counts by status and the commonest error with its count
    ('' when some trial has a finite objective, or there are no rows)."""
    if not rows or any(r["status"] in OK and math.isfinite(r["objective"]) for r in rows):
        return ""
    n = len(rows)
    how = ", ".join(f"{k} of {n} trials {s}" for s, k in Counter(r["status"] for r in rows).most_common())
    # the first line: a worker's error carries its traceback after it
    errors = [(r.get("error") or f"{r['status']} without a finite {metric}").strip().splitlines()[0] for r in rows]
    kinds = Counter(_error_kind(e) for e in errors)
    kind, count = kinds.most_common(1)[0]
    example = next(e for e in errors if _error_kind(e) == kind)
    return f"no trial produced {metric}: {how}; commonest error ({count} of {n}): {example[:300]}"


def selection_note(spec: SweepSpec) -> str:
    """What the summary says when the spec ranks by a test metric (``select_on_test: true``); '' otherwise."""
    metric = spec.objective.metric
    if not (spec.select_on_test and metric.startswith("test_")):
        return ""
    return (f"selected on the test set (select_on_test: true): the best model's {metric} is an optimistic "
            f"estimate of its {metric[5:]} on new data")


def _error_kind(error: str) -> str:
    """An error without its numbers (epochs, losses), so 'diverged at epoch 3' and 'at epoch 5' count together."""
    return re.sub(r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?", "#", error)


def write_csv(path: Path, header: Sequence[str], body: Sequence[Sequence]) -> Path:
    """Write a CSV file with a header line."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(body)
    return path


def write_summary(folder: Path, rows: Sequence[dict], spec: SweepSpec, axes: Sequence[str]) -> dict:
    """Write leaderboard/census CSV + Markdown and the plots into ``folder``; return the headline numbers.

    Returns
    -------
    dict
        ``metrics`` for the parent (counts, best objective), ``best`` (the best row or None),
        ``leaderboard_md`` and ``census_md`` (Markdown text), ``failure_note`` (:func:`failure_note`:
        '' unless no trial produced the objective), ``selection_note`` (:func:`selection_note`), ``tables``
        (``{"leaderboard": (header, body), "census": (header, body)}``).
    """
    from pipeline import plots

    folder.mkdir(parents=True, exist_ok=True)
    header, body = leaderboard_table(rows, spec, axes)
    write_csv(folder / "leaderboard.csv", header, body)
    note, selection = failure_note(rows, spec.objective.metric), selection_note(spec)
    board_md = "".join(f"**{n}**\n\n" for n in (selection, note) if n) + markdown(header, body, limit=200)
    (folder / "leaderboard.md").write_text(board_md)
    groups = census_groups(rows, spec)
    c_header, c_body = census_table(groups, spec)
    write_csv(folder / "census.csv", c_header, c_body)
    census_md = markdown(c_header, c_body)
    (folder / "census.md").write_text(census_md)
    finished = [r for r in rows if r["status"] in OK and math.isfinite(r["objective"])]
    varying = [a for a in axes if len({str(r["axes"].get(a)) for r in rows}) > 1]
    for g in groups:  # short labels: only the axes that vary
        g["label"] = _axes_label({a: g["axes"].get(a) for a in varying})
    for axis in varying:
        plots.axis_vs_objective(finished, axis, spec.objective.metric, folder / f"axis_{axis}.png")
    if spec.seed_axis is not None and groups:
        plots.census(groups, folder / "census.png")
    ranked = leaderboard(rows, spec.objective.direction)
    best = ranked[0] if ranked and ranked[0] in finished else None
    metrics = {
        "trials": len(rows), "trials_finished": len(finished), "trials_failed": sum(r["status"] == "failed" for r in rows),
        "trials_skipped": sum(r["status"] == "skipped" for r in rows),
        f"best_{spec.objective.metric}": best["objective"] if best else math.nan,
    }
    return {"metrics": metrics, "best": best, "leaderboard_md": board_md, "census_md": census_md, "groups": groups,
            "failure_note": note, "selection_note": selection,
            "tables": {"leaderboard": (header, body), "census": (c_header, c_body)}}
