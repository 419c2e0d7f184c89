"""Parquet image/patch datasets: one schema for patches and whole images.

Schema (one row per patch or image)
-----------------------------------
pixels : FixedSizeList<float32>[h*w*c]
    The pixels, flattened in C order of shape (h, w, c) (row, column,
    channel; channel fastest). A plain FixedSizeList rather than the
    ``arrow.fixed_shape_tensor`` extension type: it is the extension's own
    storage type, so reading it zero-copy is identical, but every Parquet
    reader (DuckDB, Polars, Spark, older pyarrow) understands it without the
    extension registry; the shape lives in the file metadata instead.
source_id : string
    The image a patch came from (a name such as ``camera`` or a file path).
row, col : int32
    Top-left corner of a patch in its source image; -1 for whole images.
label : int64, optional
    Class index (image datasets); class names are in the metadata.

File metadata: key ``sweepnet`` holds JSON with ``format``, ``shape`` [h, w, c],
``channels`` ("grey"/"rgb"), ``layout``, ``kind`` ("patches"/"images"),
``classes``, ``preprocessing`` (fitted steps already applied to the stored
pixels, see :mod:`pipeline.datasets.preprocess`) and ``provenance`` (source,
seed, count, created_by). No timestamps: the same command writes the same
bytes, so the data digest is reproducible. zstd compression; each row group
is a shard (the unit of work later stages fan out over).

A dataset is a ``.parquet`` file or a directory of them (same shape).
Reading: :func:`read_pixels` (whole dataset, one contiguous array),
:func:`iter_shards` / :func:`read_shard` (one row group at a time, zero-copy
read-only views), :func:`read_raw` (float64 copies for ``load_data``).
Validation of everything lives in :mod:`pipeline.datasets.checks`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datasets import checks
from pipeline.datasets.builtin import RawData
from pipeline.datasets.checks import FORMAT, META_KEY
from pipeline.datasets.tabular import check_finite, parquet_files
DEFAULT_ROWS_PER_GROUP = 16384


def _schema(n_values: int, with_label: bool, meta: dict) -> pa.Schema:
    fields = [
        pa.field("pixels", pa.list_(pa.float32(), n_values), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("col", pa.int32(), nullable=False),
    ]
    if with_label:
        fields.append(pa.field("label", pa.int64(), nullable=False))
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_dataset(path, pixels, *, source_id, row=None, col=None, label=None, kind="images",
                  classes=None, preprocessing=(), provenance=None,
                  rows_per_group=DEFAULT_ROWS_PER_GROUP) -> Path:
    """Write pixels with positions/labels as one zstd Parquet file.

    Parameters
    ----------
    path : str or Path
        Output ``.parquet`` file (parent directories are created).
    pixels : ndarray of shape (n, h, w, c)
        Values to store as float32 (must be finite).
    source_id : sequence of str of length n, or str for all rows
    row, col : ndarray of shape (n,), optional
        Patch positions; default -1 (whole images).
    label : ndarray of shape (n,), optional
        Integer class indices.
    kind : {"patches", "images"}
    classes : list, optional
        Class names; ``label`` values index into it.
    preprocessing : list of dict
        Fitted steps already applied to ``pixels`` (JSON-able dicts).
    provenance : dict, optional
        Where the data came from (source, seed, count, created_by ...).
    rows_per_group : int
        Rows per row group (= shard).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[0] == 0:
        raise ValueError(f"pixels has shape {pixels.shape}; write_dataset needs (n >= 1, h, w, c). "
                         "Add a channel axis to grey images, e.g. images[..., None].")
    if rows_per_group < 1:
        raise ValueError(f"rows_per_group={rows_per_group}; use a positive number of rows per shard.")
    n, h, w, c = pixels.shape
    flat = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1)
    if not np.isfinite(flat).all():
        raise ValueError(f"pixels contain {int((~np.isfinite(flat)).sum())} NaN/inf values; "
                         "clean the images before writing.")
    minus = np.full(n, -1, dtype=np.int32)
    ids = [source_id] * n if isinstance(source_id, str) else list(source_id)
    meta = {"format": FORMAT, "shape": [h, w, c], "channels": "grey" if c == 1 else "rgb",
            "layout": "pixels flattened in C order of (h, w, c)", "kind": kind,
            "classes": None if classes is None else list(classes),
            "preprocessing": list(preprocessing), "provenance": dict(provenance or {})}
    columns = [pa.FixedSizeListArray.from_arrays(pa.array(flat), h * w * c), pa.array(ids, pa.string()),
               pa.array(minus if row is None else np.asarray(row, np.int32)),
               pa.array(minus if col is None else np.asarray(col, np.int32))]
    if label is not None:
        columns.append(pa.array(np.asarray(label, dtype=np.int64)))
    table = pa.Table.from_arrays(columns, schema=_schema(h * w * c, label is not None, meta))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=rows_per_group)
    return path


def file_meta(file) -> dict:
    """The ``sweepnet`` JSON metadata of one file (``{}`` if absent)."""
    raw = (pq.read_schema(file).metadata or {}).get(META_KEY)
    return {} if raw is None else json.loads(raw)


def dataset_meta(path) -> dict:
    """Metadata of a dataset (the first file's, after :func:`validate` checks consistency)."""
    return checks.validate(path, scan=False)["meta"]


def _pixels_view(column) -> np.ndarray:
    """(rows, n_values) float32 read-only view of a one-chunk pixels column."""
    chunk = column.chunk(0) if isinstance(column, pa.ChunkedArray) else column
    width = chunk.type.list_size
    return chunk.flatten().to_numpy(zero_copy_only=True).reshape(len(chunk), width)


def shard_index(path) -> list[tuple[Path, int]]:
    """(file, row_group) for every shard of the dataset, in order."""
    out = []
    for file in parquet_files(Path(path)):
        out.extend((file, g) for g in range(pq.ParquetFile(file).num_row_groups))
    return out


def read_shard(path, index: int, *, labels: bool = False):
    """Read shard ``index`` (global row-group number) zero-copy.

    Returns
    -------
    pixels : ndarray of shape (rows, h*w*c), float32, read-only
    labels : ndarray of shape (rows,) int64, or None (only if ``labels=True``)
    """
    shards = shard_index(path)
    if not 0 <= index < len(shards):
        raise ValueError(f"shard index {index} out of range; {path} has {len(shards)} shards (0..{len(shards) - 1}).")
    file, group = shards[index]
    columns = ["pixels", "label"] if labels and "label" in pq.read_schema(file).names else ["pixels"]
    table = pq.ParquetFile(file).read_row_group(group, columns=columns)
    pixels = _pixels_view(table.column("pixels"))
    if not labels:
        return pixels
    return pixels, (table.column("label").to_numpy() if "label" in columns else None)


def iter_shards(path) -> Iterator[tuple[int, np.ndarray]]:
    """Stream a dataset one row group at a time (bounded memory).

    Yields
    ------
    shard_index : int
        Global row-group number across the dataset's files.
    pixels : ndarray of shape (rows, h*w*c), float32
        Read-only zero-copy view of the decoded row group. Copy it
        (``np.array(pixels)``) before writing to it or passing it to a Numba
        kernel compiled for writable arrays.
    """
    index = 0
    for file in parquet_files(Path(path)):
        reader = pq.ParquetFile(file)
        for group in range(reader.num_row_groups):
            yield index, _pixels_view(reader.read_row_group(group, columns=["pixels"]).column("pixels"))
            index += 1


def read_pixels(path, *, validate: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read a whole dataset into one contiguous array.

    A single-row-group dataset is returned as a zero-copy read-only view of
    the decoded Arrow buffer. Otherwise the output is allocated once and
    filled row group by row group (one copy; peak memory = output + one
    shard, about 2x faster than ``pq.read_table`` + concatenation).

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` file or a directory of them.
    validate : bool
        Check schema/metadata first and every shard for null or NaN/inf
        pixels while reading.

    Returns
    -------
    pixels : ndarray of shape (n, h*w*c), float32, C-contiguous
    labels : ndarray of shape (n,), int64, or None
    meta : dict (see module docstring)
    """
    files = parquet_files(Path(path))
    meta = checks.validate(path, scan=False)["meta"] if validate else file_meta(files[0])
    has_label = all("label" in pq.read_schema(f).names for f in files)
    columns = ["pixels", "label"] if has_label else ["pixels"]
    readers = [(f, checks.open_file(f)) for f in files]
    n = sum(r.metadata.num_rows for _, r in readers)
    single = len(readers) == 1 and readers[0][1].num_row_groups == 1
    pixels = labels = None
    if not single:
        pixels = np.empty((n, int(np.prod(meta["shape"]))), dtype=np.float32)
        labels = np.empty(n, dtype=np.int64) if has_label else None
    start = 0
    for file, reader in readers:
        offset = 0
        for group in range(reader.num_row_groups):
            table = _read_group(file, reader, group, columns)
            view = _pixels_view(table.column("pixels"))
            if validate:
                check_finite(view, file, "pixels", row_offset=offset)
            if single:
                return view, (table.column("label").to_numpy() if has_label else None), meta
            pixels[start:start + len(view)] = view
            if has_label:
                labels[start:start + len(view)] = table.column("label").to_numpy()
            start, offset = start + len(view), offset + len(view)
    return pixels, labels, meta


def _read_group(file, reader, group: int, columns: list[str]) -> pa.Table:
    try:
        table = reader.read_row_group(group, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ValueError(f"{file}: row group {group} cannot be decoded ({exc}); the file is corrupt, "
                         "re-create the dataset.") from exc
    if table.column("pixels").null_count:
        raise ValueError(f"{file}: column 'pixels' has {table.column('pixels').null_count} null rows in row "
                         f"group {group}; every row needs its pixels, re-create the dataset.")
    return table


def read_raw(path) -> RawData:
    """Dataset as float64 copies for :func:`pipeline.datasets.load_data`."""
    pixels, labels, meta = read_pixels(path)
    h, w, c = meta["shape"]
    X = np.array(pixels, dtype=np.float64, order="C")
    y = None if labels is None else labels.astype(np.float64)
    return RawData(X, y, (h, w, c), [], f"{path} ({meta.get('kind', 'images')} {h}x{w}x{c})",
                   tuple(meta.get("preprocessing") or ()), meta.get("classes"))
