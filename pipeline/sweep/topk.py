"""Pictures of the best trials, drawn at summary time on the driver from what their children logged.

A trial's worker logs only cheap files (``config.yaml``, ``scoring_history.csv``, ``model/weights.npz``):
drawing a learning curve and a feature picture per trial cost ~26 ms of a ~40 ms digits trial. The summary
draws them for the ``pictures_top_k`` best children instead (leaderboard order, default 10) and adds them to
those children's artifacts, one upload a child. ``draw_trial`` draws any child's on demand.
"""

from __future__ import annotations

import csv
import math
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from pipeline import tracking_files
from pipeline.sweep import summary
from pipeline.tracking import TrackingContext

#: How many of the best children get pictures when the spec does not say (``pictures_top_k``).
TOP_K = 10


def read_history(path: Path) -> list[dict]:
    """``scoring_history.csv`` back to one dict per epoch, numbers as floats (blank cells dropped)."""
    rows = []
    with open(path, newline="") as handle:
        for rec in csv.DictReader(handle):
            rows.append({k: _number(v) for k, v in rec.items() if v not in ("", None)})
    return rows


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def draw_trial(ctx: TrackingContext, run_id: str, title: str = "") -> list[str]:
    """Draw ``learning_curve.png`` (and ``features.png`` for image data) of child ``run_id`` from its logged
    scoring history and weights, and add them to its artifacts. Returns the names drawn."""
    from pipeline import plots
    from pipeline.model import DeepLearningModel
    from pipeline.pictures import feature_inputs, write_feature_picture

    with tempfile.TemporaryDirectory() as tmp:
        got, out = Path(tmp, "in"), Path(tmp, "out")
        got.mkdir()
        out.mkdir()
        history = read_history(tracking_files.download(ctx, run_id, "scoring_history.csv", got))
        plots.learning_curve(history, out / "learning_curve.png", title=title)
        try:
            model = DeepLearningModel.load(tracking_files.download(ctx, run_id, "model/weights.npz", got))
            W, shape, steps = feature_inputs(model)
            write_feature_picture(W, shape, out / "features.png", steps or None)
        except (ValueError, TypeError, KeyError, AttributeError, OSError):
            pass  # not image data (no image_shape), or a first layer that is not per-pixel
        tracking_files.upload(ctx, run_id, out)
        return sorted(p.name for p in out.iterdir())


def draw_top(ctx: TrackingContext, rows: Sequence[dict], direction: str, k: int = TOP_K) -> list[str]:
    """Pictures for the ``k`` best finished children of ``rows`` (leaderboard order); returns their run ids.

    Best effort: a child whose files cannot be read (e.g. logged without artifacts) is warned about and skipped.
    """
    done = []
    for row in summary.leaderboard(rows, direction):
        if len(done) >= k:
            break
        if row["status"] not in summary.OK or not math.isfinite(row.get("objective", math.nan)) \
                or not row.get("run_id"):
            continue
        try:
            draw_trial(ctx, row["run_id"], title=f"trial {row.get('index', '')}".strip())
        except Exception as err:  # noqa: BLE001 - a missing picture must not fail the sweep's summary
            warnings.warn(f"no pictures for child {row['run_id']}: {type(err).__name__}: {err}", RuntimeWarning,
                          stacklevel=2)
            continue
        done.append(row["run_id"])
    return done
