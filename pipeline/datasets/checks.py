"""Check an image/patch Parquet dataset before any training.

Every problem raises a ``ValueError`` naming the file, the column and the
fix: unreadable (truncated/corrupt) file, missing or foreign metadata, wrong
``pixels`` type, tensor size that disagrees with the metadata shape, label
column that is not integer, shapes that differ across files, empty dataset,
and (with ``scan=True``) null or NaN/inf pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datasets.tabular import check_finite, parquet_files

#: ``format`` value and file-metadata key of the pixel schema (:mod:`pipeline.datasets.store`).
FORMAT = "sweepnet-pixels/1"
META_KEY = b"sweepnet"

_RECREATE = "re-create it with `sweepnet data patches` / `sweepnet data images` (or write_dataset)"


def open_file(file: Path) -> pq.ParquetFile:
    """Open ``file`` or raise a ValueError that says it is truncated/corrupt."""
    try:
        return pq.ParquetFile(file)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ValueError(f"{file}: not a readable Parquet file ({exc}); it is truncated or corrupt, "
                         f"{_RECREATE}.") from exc


def _file_meta(file: Path, schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{file}: no 'sweepnet' metadata, so the image shape is unknown; {_RECREATE}. "
                         "A plain table with one column per feature is read as tabular data instead "
                         "(rename its 'pixels' column).")
    meta = json.loads(raw)
    shape = meta.get("shape")
    if meta.get("format") != FORMAT or not (isinstance(shape, list) and len(shape) == 3
                                            and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"{file}: metadata format {meta.get('format')!r} / shape {shape!r} is not "
                         f"{FORMAT!r} with shape [h, w, c] of positive ints; {_RECREATE}.")
    return meta


def _check_schema(file: Path, schema: pa.Schema, shape: list[int]) -> None:
    if "pixels" not in schema.names:
        raise ValueError(f"{file}: column 'pixels' is missing (columns: {schema.names}); {_RECREATE}.")
    kind = schema.field("pixels").type
    expected = int(np.prod(shape))
    if not (pa.types.is_fixed_size_list(kind) and kind.value_type == pa.float32()):
        raise ValueError(f"{file}: column 'pixels' has type {kind}; expected "
                         f"fixed_size_list<float32>[{expected}] (one row per image); {_RECREATE}.")
    if kind.list_size != expected:
        raise ValueError(f"{file}: column 'pixels' holds {kind.list_size} values per row but the metadata "
                         f"shape {tuple(shape)} needs {expected}; the file and its metadata disagree, "
                         f"{_RECREATE}.")
    if "label" in schema.names and not pa.types.is_integer(schema.field("label").type):
        raise ValueError(f"{file}: column 'label' has type {schema.field('label').type}; expected int64 "
                         "class indices (class names go in the metadata); re-write the labels as integers.")


def scan_values(file: Path, reader: pq.ParquetFile) -> None:
    """Row group by row group: no null rows, no NaN/inf pixels."""
    offset = 0
    for group in range(reader.num_row_groups):
        try:
            column = reader.read_row_group(group, columns=["pixels"]).column("pixels")
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise ValueError(f"{file}: row group {group} cannot be decoded ({exc}); the file is corrupt, "
                             f"{_RECREATE}.") from exc
        if column.null_count:
            raise ValueError(f"{file}: column 'pixels' has {column.null_count} null rows in row group "
                             f"{group}; every row needs its pixels, {_RECREATE}.")
        values = np.concatenate([c.flatten().to_numpy(zero_copy_only=True).reshape(len(c), c.type.list_size)
                                 for c in column.chunks]) if column.num_chunks else np.empty((0, 1))
        check_finite(values, file, "pixels", row_offset=offset)
        offset += len(values)


def validate(path, *, scan: bool = True) -> dict:
    """Validate a dataset file or directory.

    Parameters
    ----------
    path : str or Path
    scan : bool
        Also read every pixel to check for nulls and NaN/inf (a full pass).

    Returns
    -------
    report : dict
        ``files`` (list of str), ``rows``, ``shards``, ``shape`` (h, w, c),
        ``meta`` (metadata of the first file), ``schema`` (str).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory; give a .parquet file or a directory of them.")
    files = parquet_files(path)
    rows = shards = 0
    first_meta = first_file = None
    for file in files:
        reader = open_file(file)
        meta = _file_meta(file, reader.schema_arrow)
        _check_schema(file, reader.schema_arrow, meta["shape"])
        if first_meta is None:
            first_meta, first_file = meta, file
        elif meta["shape"] != first_meta["shape"]:
            raise ValueError(f"{file}: column 'pixels' has shape {tuple(meta['shape'])} but {first_file} has "
                             f"{tuple(first_meta['shape'])}; all files of a dataset need one shape, move "
                             "the odd file to its own dataset.")
        if scan:
            scan_values(file, reader)
        rows += reader.metadata.num_rows
        shards += reader.num_row_groups
    if rows == 0:
        raise ValueError(f"{path}: the dataset is empty (0 rows in column 'pixels'); write some "
                         "patches or images first.")
    return {"files": [str(f) for f in files], "rows": rows, "shards": shards,
            "shape": tuple(first_meta["shape"]), "meta": first_meta,
            "schema": str(open_file(files[0]).schema_arrow.remove_metadata())}
