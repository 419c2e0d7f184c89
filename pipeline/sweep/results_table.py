"""Per-chunk result tables of ``child_per: config`` sweeps: one Parquet file per chunk on the parent run.

The worker that ran a chunk writes its trials' results in ONE upload (:func:`write_chunk`) as an artifact of
the sweep's parent run, ``results/rung-<r>/chunk-<first index>-<digest of the chunk's keys>.parquet``. The
name depends only on the chunk's trials, so a chunk Dask re-executes overwrites the same file. A rerun of the
sweep reads them back with :func:`read_tables` (one listing and one download per chunk, not one per
configuration); a key found in several files (a chunk of an earlier run whose configuration ran again) keeps
the row that ended last.

Columns: ``key, config_key, index, seed, rung, status, objective, epochs_run, seconds, error, pid, ended`` and
one ``m_<metric>`` column (float, null where a trial lacks it) per metric of the chunk's trials.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Iterable

from pipeline import tracking_files
from pipeline.sweep.outcome import TrialOutcome

#: Folder of the tables among the parent run's artifacts.
FOLDER = "results"
#: Tag on a configuration child whose per-seed rows are in the chunk tables (no ``seeds.csv`` of its own).
TAG_LAYOUT = "sweepnet.results_layout"
LAYOUT = "chunk-tables"
#: Tag on a configuration child naming the tables that hold its per-seed rows (a pointer for the UI user).
TAG_TABLES = "sweepnet.results_tables"
COLUMNS = ("key", "config_key", "index", "seed", "rung", "status", "objective", "epochs_run", "seconds",
           "error", "pid", "ended")
_ERROR_CHARS = 2000


def chunk_path(outcomes: Iterable[TrialOutcome]) -> str:
    """Artifact path of the table of a chunk's ``outcomes`` (deterministic: same trials, same path)."""
    outcomes = list(outcomes)
    if not outcomes:
        raise ValueError("chunk_path needs at least one outcome: an empty chunk has no table")
    digest = hashlib.sha256("\n".join(sorted(o.key for o in outcomes)).encode()).hexdigest()[:12]
    first = min(o.index for o in outcomes)
    return f"{FOLDER}/rung-{outcomes[0].rung}/chunk-{first:06d}-{digest}.parquet"


def to_table(outcomes: Iterable[TrialOutcome]):
    """The chunk's outcomes as a ``pyarrow.Table`` (one row per trial, see the module docstring)."""
    import pyarrow as pa

    outcomes = list(outcomes)
    names = sorted({k for o in outcomes for k in o.metrics})
    cols = {
        "key": pa.array([o.key for o in outcomes], pa.string()),
        "config_key": pa.array([o.config_key for o in outcomes], pa.string()),
        "index": pa.array([o.index for o in outcomes], pa.int64()),
        "seed": pa.array([o.seed for o in outcomes], pa.int64()),
        "rung": pa.array([o.rung for o in outcomes], pa.int32()),
        "status": pa.array([o.status for o in outcomes], pa.string()),
        "objective": pa.array([float(o.objective) for o in outcomes], pa.float64()),
        "epochs_run": pa.array([o.epochs_run for o in outcomes], pa.int32()),
        "seconds": pa.array([float(o.seconds) for o in outcomes], pa.float64()),
        "error": pa.array([o.error[:_ERROR_CHARS] for o in outcomes], pa.string()),
        "pid": pa.array([o.pid for o in outcomes], pa.int64()),
        "ended": pa.array([o.ended for o in outcomes], pa.float64()),
    }
    for name in names:
        cols[f"m_{name}"] = pa.array([o.metrics.get(name) for o in outcomes], pa.float64())
    return pa.table(cols)


def write_chunk(ctx, outcomes: list[TrialOutcome]) -> str:
    """Upload the chunk's table to the parent run of ``ctx`` (one request); set ``table`` on each outcome
    and return the artifact path. Raises what the store raised: the caller decides (the runner warns and
    leaves ``table`` unset, so the driver writes the table itself, see ``collect.Collector``)."""
    import pyarrow.parquet as pq

    path = chunk_path(outcomes)
    folder, name = path.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        pq.write_table(to_table(outcomes), local, compression="zstd")
        tracking_files.upload_file(ctx, ctx.parent_run_id, local, folder)
    for o in outcomes:
        o.table = path
    return path


def read_tables(ctx) -> dict[str, dict]:
    """Every row of the parent's chunk tables, one per trial key (the row that ended last): key -> row dict
    (the :data:`COLUMNS` plus ``metrics``, a dict of the non-null ``m_`` columns). Empty when there are none."""
    import pyarrow.parquet as pq

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = tracking_files.download_if_present(ctx, ctx.parent_run_id, FOLDER, tmp)
        if folder is None:
            return rows
        for file in sorted(Path(folder).rglob("*.parquet")):
            for rec in pq.read_table(file).to_pylist():
                row = {k: rec.get(k) for k in COLUMNS}
                row["metrics"] = {k[2:]: v for k, v in rec.items() if k.startswith("m_") and v is not None}
                row["table"] = str(file.relative_to(Path(folder).parent).as_posix())
                old = rows.get(row["key"])
                if old is None or _ended(row) >= _ended(old):
                    rows[row["key"]] = row
    return rows


def _ended(row: dict) -> float:
    value = row.get("ended")
    return -math.inf if value is None else float(value)


def pointer(paths: Iterable[str], limit: int = 4000) -> str:
    """Tag text naming the tables of one configuration (cut, with a note, past ``limit`` characters)."""
    paths = sorted(set(p for p in paths if p))
    text = ",".join(paths)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(",", 1)[0] + f",... ({len(paths)} tables under {FOLDER}/; filter rows by config_key)"
