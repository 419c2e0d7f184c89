"""The Pillow learning-curve chart: ticks, scales, gaps and what ends up in the PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageColor

from pipeline import curve_png, plots


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (-3.2, 7.9), (1e-4, 3e-4), (0.0, 10000.0), (5.0, 5.0)])
def test_nice_ticks_are_round_evenly_spaced_and_inside_the_range(lo, hi):
    ticks = curve_png.nice_ticks(lo, hi)
    top = hi if hi > lo else lo + 1.0
    assert 2 <= len(ticks) <= 11
    assert ticks[0] >= lo - 1e-12 and ticks[-1] <= top + 1e-9
    steps = np.diff(ticks)
    np.testing.assert_allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


def _pixels_of(img: Image.Image, colour: str) -> int:
    rgb = np.asarray(img.convert("RGB")).astype(int)
    target = np.array(ImageColor.getrgb(colour))
    return int((np.abs(rgb - target).sum(axis=2) < 40).sum())


def test_learning_curve_draws_every_loss_series_in_its_own_colour(tmp_path):
    history = [{"epoch": e, "samples": 4 * e, "training_objective": 1.0 / e, "validation_loss": 2.0 / e,
                "training_MSE": 0.5} for e in range(1, 101)]
    path = plots.learning_curve(history, tmp_path / "curve.png", title="trial 3")
    img = Image.open(path)
    assert img.format == "PNG" and img.size == curve_png.SIZE
    assert _pixels_of(img, curve_png.COLOURS[0]) > 100  # training_objective
    assert _pixels_of(img, curve_png.COLOURS[1]) > 100  # validation_loss
    assert _pixels_of(img, curve_png.COLOURS[2]) == 0  # training_MSE is not a loss curve


def test_a_nan_breaks_the_line_and_non_positive_values_use_a_linear_axis(tmp_path):
    x = np.arange(1.0, 41.0)
    y = np.linspace(1.0, -1.0, 40)  # crosses zero: no log scale
    y[20] = np.nan
    curve_png.line_chart(x, {"training_objective": y}, tmp_path / "gap.png")
    runs = curve_png.finite_runs(x, y)
    assert [len(r) for r in runs] == [20, 19]
    assert _pixels_of(Image.open(tmp_path / "gap.png"), curve_png.COLOURS[0]) > 50


@pytest.mark.parametrize("history", [[], [{"epoch": 1, "training_objective": 0.5}],
                                     [{"epoch": e, "training_objective": math.inf} for e in (1, 2)]])
def test_degenerate_histories_still_write_a_picture(tmp_path, history):
    path = plots.learning_curve(history, tmp_path / "degenerate.png")
    assert Image.open(path).size == curve_png.SIZE
