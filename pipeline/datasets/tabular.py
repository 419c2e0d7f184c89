"""Tabular sources: a CSV file, or a Parquet file / directory with one column per feature.

Columns are checked before any training: a missing column, a non-numeric
feature or a NaN/inf value raises a ``ValueError`` that names the file, the
column and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.datasets.builtin import RawData


def parquet_files(path: Path) -> list[Path]:
    """The ``.parquet`` files of a file or directory path, sorted by name."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file())
        if not files:
            raise ValueError(
                f"{path}: directory contains no .parquet files; point source at a .parquet file, "
                "a directory of them, or a .csv file."
            )
        return files
    return [path]


def read_table(path: Path) -> pa.Table:
    """Read a CSV or Parquet (file or directory) into one Arrow table."""
    if path.suffix == ".csv":
        import pyarrow.csv as pacsv

        try:
            return pacsv.read_csv(path)
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{path}: cannot parse as CSV ({exc}); check the delimiter and header row.") from exc
    import pyarrow.parquet as pq

    tables = []
    for file in parquet_files(path):
        try:
            tables.append(pq.read_table(file))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(
                f"{file}: not a readable Parquet file ({exc}); it may be truncated or corrupt, "
                "re-create it."
            ) from exc
    files = parquet_files(path)
    first = tables[0].schema
    for file, table in zip(files, tables):
        if table.column_names != first.names:
            raise ValueError(
                f"{file}: columns {table.column_names} differ from {first.names} in the first file of "
                f"{path}; every file of a dataset directory needs the same columns."
            )
        for field in table.schema:
            expected = first.field(field.name).type
            if field.type != expected:
                raise ValueError(
                    f"{file}: column {field.name!r} has type {field.type} but {files[0].name} has {expected}; "
                    "every file of a dataset directory needs the same column types — rewrite it with that type."
                )
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _missing(path: Path, column: str, role: str, available: list[str]) -> ValueError:
    return ValueError(
        f"{path}: {role} column {column!r} not found; available columns: {available}. "
        f"Fix the data spec's {role} entry."
    )


def _numeric_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type)):
        raise ValueError(
            f"{path}: column {name!r} has type {column.type}, not a number; encode it as numbers "
            "or leave it out of features."
        )
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"{path}: column {name!r} has {column.null_count} missing values (first at row {first}); "
            "drop or impute those rows before training."
        )
    values = column.to_numpy().astype(np.float64)
    check_finite(values, path, name)
    return values


def check_finite(values: np.ndarray, path, column: str, row_offset: int = 0) -> None:
    """Raise a ValueError naming ``path``/``column`` if ``values`` holds NaN or inf.

    Parameters
    ----------
    values : ndarray of any shape; rows along axis 0
    row_offset : int
        Row number of ``values[0]`` in the file (for chunked checks).
    """
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        raise ValueError(
            f"{path}: column {column!r} has {int(bad.sum())} NaN/inf values in {len(rows)} rows "
            f"(first at row {row_offset + int(rows[0])}); drop or impute those rows (or re-create the dataset) "
            "before training."
        )


def load_tabular(path: Path, features: list[str] | None, target: str | None) -> RawData:
    """Read ``features`` (default: all but ``target``) and ``target`` from a tabular file.

    Returns
    -------
    RawData
        ``X`` of shape (n_rows, n_features) float64; ``y`` float64 for numeric
        targets, a str array for text labels, ``None`` without a target.
    """
    table = read_table(path)
    available = table.column_names
    if target is not None and target not in available:
        raise _missing(path, target, "target", available)
    if features is None:
        features = [c for c in available if c != target]
    for name in features:
        if name not in available:
            raise _missing(path, name, "features", available)
    if not features:
        raise ValueError(f"{path}: no feature columns (available: {available}); list them in features.")
    if table.num_rows == 0:
        raise ValueError(f"{path}: the dataset is empty (0 rows); write some rows or pick another source.")
    X = np.empty((table.num_rows, len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        X[:, j] = _numeric_column(path, table, name)
    y = None
    if target is not None:
        column = table.column(target)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            if column.null_count:
                raise ValueError(f"{path}: target column {target!r} has {column.null_count} missing labels; "
                                 "drop those rows before training.")
            y = np.asarray(column.to_pylist(), dtype=str)
        else:
            y = _numeric_column(path, table, target)
    return RawData(X, y, None, list(features), f"{path} (tabular)")
