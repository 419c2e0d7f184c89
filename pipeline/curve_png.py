"""A small line chart drawn straight into a PNG with Pillow: the per-trial learning curve.

Every trial of a sweep writes one, on the worker, between trainings. matplotlib spends 33-100 ms per
figure (text layout, tick locators, two draws for ``tight_layout``); this draws the same content
(axes, ticks and grid, one line per series, legend, title; log scale for positive values) in a few
milliseconds. The sweep's summary plots stay matplotlib.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: matplotlib's tab10 colours, so the curves match the summary plots.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
SIZE = (400, 256)
BOX = (58, 22, 390, 218)  # left, top, right, bottom of the plotting area
SCALE = 2  # drawn at twice the size and reduced: smooth lines without an anti-aliasing renderer


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def nice_ticks(lo: float, hi: float, target: int = 5) -> np.ndarray:
    """Round tick positions (steps of 1, 2, 2.5 or 5 × 10^k) covering [lo, hi], about ``target`` of them."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(target, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return np.arange(first, hi + step * 1e-9, step)


def _label(value: float, log: bool) -> str:
    if log:
        return f"1e{int(round(value))}" if abs(value - round(value)) < 1e-9 else f"{10 ** value:.3g}"
    return f"{value:.4g}"


def line_chart(x: np.ndarray, series: dict[str, np.ndarray], path: str | Path, title: str = "",
               xlabel: str = "epoch", ylabel: str = "loss") -> Path:
    """Draw ``series`` (name -> values, shape (n,), NaN = gap) against ``x`` (shape (n,)) into ``path``.

    The y axis is logarithmic when every finite value is positive. Returns the path.
    """
    path = Path(path)
    S = SCALE
    img = Image.new("RGB", (SIZE[0] * S, SIZE[1] * S), "white")
    draw = ImageDraw.Draw(img)
    finite = np.concatenate([v[np.isfinite(v)] for v in series.values()]) if series else np.empty(0)
    log = finite.size > 0 and bool((finite > 0).all())
    ys = {k: (np.log10(np.where(v > 0, v, np.nan)) if log else v.astype(float)) for k, v in series.items()}
    shown = np.concatenate([v[np.isfinite(v)] for v in ys.values()]) if ys else np.empty(0)
    ylo, yhi = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    xlo, xhi = (float(np.min(x)), float(np.max(x))) if len(x) else (0.0, 1.0)
    ylo, yhi = _padded(ylo, yhi)
    xlo, xhi = (xlo, xhi) if xhi > xlo else (xlo - 0.5, xhi + 0.5)
    left, top, right, bottom = (v * S for v in BOX)

    def px(xv, yv):
        return (left + (xv - xlo) / (xhi - xlo) * (right - left), bottom - (yv - ylo) / (yhi - ylo) * (bottom - top))

    small, large = _font(10 * S), _font(11 * S)
    yt = np.arange(math.ceil(ylo), math.floor(yhi) + 1) if log and math.floor(yhi) - math.ceil(ylo) >= 1 else \
        nice_ticks(ylo, yhi)
    for v in yt:
        _, py = px(xlo, v)
        draw.line([(left, py), (right, py)], fill="#e6e6e6", width=S)
        draw.text((left - 4 * S, py), _label(v, log), fill="black", font=small, anchor="rm")
    for v in nice_ticks(xlo, xhi, 6):
        qx, _ = px(v, ylo)
        draw.line([(qx, bottom), (qx, bottom + 3 * S)], fill="black", width=S)
        draw.text((qx, bottom + 5 * S), _label(v, False), fill="black", font=small, anchor="mt")
    for number, (name, v) in enumerate(ys.items()):
        colour = COLOURS[number % len(COLOURS)]
        for run in finite_runs(np.asarray(x, float), v):
            points = [px(a, b) for a, b in run]
            if len(points) > 1:
                draw.line(points, fill=colour, width=3 * S // 2, joint="curve")
            else:
                draw.ellipse([points[0][0] - S, points[0][1] - S, points[0][0] + S, points[0][1] + S], fill=colour)
        row = top + (8 + 13 * number) * S
        draw.line([(right - 120 * S, row), (right - 104 * S, row)], fill=colour, width=3 * S // 2)
        draw.text((right - 100 * S, row), name, fill="black", font=small, anchor="lm")
    draw.rectangle([left, top, right, bottom], outline="black", width=S)
    draw.text(((left + right) / 2, 4 * S), title, fill="black", font=large, anchor="mt")
    draw.text(((left + right) / 2, (SIZE[1] - 4) * S), xlabel, fill="black", font=large, anchor="mb")
    draw.text((4 * S, 4 * S), f"{ylabel} (log scale)" if log else ylabel, fill="black", font=large, anchor="lt")
    img.reduce(S).save(path, format="PNG")
    return path


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi <= lo:
        return lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def finite_runs(x: np.ndarray, y: np.ndarray) -> list[Sequence[tuple[float, float]]]:
    """Consecutive finite (x, y) points: a NaN or inf breaks the line."""
    runs, current = [], []
    for a, b in zip(x, y):
        if math.isfinite(a) and math.isfinite(b):
            current.append((a, b))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs
