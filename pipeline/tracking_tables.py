"""The sweep's summary tables on its parent run as MLflow tables, which the UI's artifact view renders."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.tracking import TrackingContext, client, uri_for


def log_tables(ctx: TrackingContext, tables: dict[str, tuple[list[str], list[list]]]) -> None:
    """Tables on the parent run as MLflow tables (``MlflowClient.log_table``: a JSON artifact the UI's artifact
    view renders as a table, listed in the run's ``mlflow.loggedArtifacts`` tag).

    ``tables`` maps an artifact file (``"tables/leaderboard.json"``) to ``(header, body)``. Dots in column names
    become ``_`` (the UI's table reads ``model.l1`` as a nested field and shows empty cells). ``log_table`` appends
    to an existing file, but a rerun reopens the same parent with every row again: an existing table is replaced
    with the same JSON layout (pandas ``orient="split"``).
    """
    import pandas as pd

    c = client(uri_for(ctx))
    for artifact_file, (header, body) in tables.items():
        frame = pd.DataFrame([list(row) for row in body], columns=[h.replace(".", "_") for h in header])
        folder, _, name = artifact_file.rpartition("/")
        if any(f.path == artifact_file for f in c.list_artifacts(ctx.parent_run_id, folder or None)):
            with tempfile.TemporaryDirectory() as tmp:
                frame.to_json(Path(tmp, name), orient="split", index=False, date_format="iso")
                c.log_artifact(ctx.parent_run_id, str(Path(tmp, name)), folder or None)
        else:
            c.log_table(ctx.parent_run_id, frame, artifact_file)
