"""Plots for sweeps: learning curves, each swept axis against the objective, initialisation census.

matplotlib with the Agg backend only (workers have no display); every function writes one PNG and
closes its figure so a long-lived worker process does not accumulate figures. Learning curves (one per
trial, on the workers) are drawn with Pillow instead: see :mod:`pipeline.curve_png`.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from pipeline import curve_png  # noqa: E402


def learning_curve(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Per-epoch losses (every ``*loss``/``*objective`` key of ``history``) against epoch, log-scaled when
    positive.

    Every trial of a sweep writes one, so it is drawn with Pillow (:mod:`pipeline.curve_png`): measured
    here 5 ms per PNG against 102 ms for a matplotlib figure with ``tight_layout``.

    Parameters
    ----------
    history : sequence of dict
        ``TrainResult.history``: one dict per epoch with ``epoch`` and metric values.
    path : path
        PNG to write.
    """
    keys = loss_keys(history)
    epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(history)], dtype=float)
    series = {k: np.array([row.get(k, math.nan) for row in history], dtype=float) for k in keys}
    return curve_png.line_chart(epochs, series, path, title)


def loss_keys(history: Sequence[dict]) -> list[str]:
    """The history columns a learning curve shows: every ``*objective`` and ``*loss`` key, sorted."""
    return sorted({k for row in history for k in row if "objective" in k or k.endswith("loss")})


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def axis_vs_objective(rows: Sequence[dict], axis: str, objective: str, path: str | Path) -> Path:
    """Objective of every finished trial against one swept axis; the mean per value as a line.

    Numeric axes keep their scale (log when spanning > 2 decades); other axes are categorical.
    """
    pts = [(r["axes"].get(axis), r["objective"]) for r in rows if math.isfinite(r.get("objective", math.nan))]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
    numeric = pts and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in pts)
    if numeric:
        xs, ys = [float(v) for v, _ in pts], [o for _, o in pts]
        ax.scatter(xs, ys, s=12, alpha=0.6)
        levels = sorted(set(xs))
        means = [statistics.fmean(y for x, y in zip(xs, ys) if x == lv) for lv in levels]
        ax.plot(levels, means, color="k", lw=1)
        if levels[0] > 0 and levels[-1] / levels[0] > 100:
            ax.set_xscale("log")
    else:
        labels = sorted({_label(v) for v, _ in pts})
        pos = {lab: i for i, lab in enumerate(labels)}
        ax.scatter([pos[_label(v)] for v, _ in pts], [o for _, o in pts], s=12, alpha=0.6)
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set_xlabel(axis)
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} vs {axis}", fontsize=9)
    return _save(fig, path)


def census(groups: Sequence[dict], path: str | Path) -> Path:
    """Initialisation census: share of seeds solved/at the best loss, and final-loss spread per config.

    Parameters
    ----------
    groups : sequence of dict
        One per configuration with ``label``, ``share_best``, ``share_solved`` (may be NaN) and
        ``values`` (the per-seed objective values).
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(5, 0.6 * len(groups) + 2), 6), dpi=80)
    x = list(range(len(groups)))
    labels = [g["label"] for g in groups]
    top.bar([i - 0.2 for i in x], [g["share_best"] for g in groups], width=0.4, label="reach best loss")
    solved = [g.get("share_solved", math.nan) for g in groups]
    if any(math.isfinite(s) for s in solved):
        top.bar([i + 0.2 for i in x], [0 if math.isnan(s) else s for s in solved], width=0.4, label="solved")
    top.set_ylim(0, 1.05)
    top.set_ylabel("share of seeds")
    top.legend(fontsize=8)
    top.set_xticks(x, [""] * len(x))
    vals = [[v for v in g["values"] if math.isfinite(v)] or [math.nan] for g in groups]
    bottom.boxplot(vals, positions=x, widths=0.5)
    bottom.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    bottom.set_ylabel("final objective per seed")
    finite = [v for vs in vals for v in vs if math.isfinite(v)]
    if finite and all(v > 0 for v in finite):  # no finite value (every seed failed): a linear empty axis
        bottom.set_yscale("log")
    return _save(fig, path)
