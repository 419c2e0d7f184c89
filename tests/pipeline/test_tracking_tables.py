"""The parent's summary tables as MLflow tables: readable with ``mlflow.load_table``, listed for the UI, and
replaced (not appended to) when a rerun reopens the same parent."""

import json

import mlflow

from pipeline import tracking, tracking_tables


def test_tables_are_mlflow_tables_and_a_rerun_replaces_them(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = tracking.open_sweep(uri, "tables", "tables", "k1", {}, tmp_path / "art")
    header, body = ["rank", "model.l1", "valid_accuracy"], [[1, "1e-05", 0.94], [2, "0", 0.93]]
    for _ in range(2):  # the second time is a rerun of the same sweep
        tracking_tables.log_tables(ctx, {"tables/leaderboard.json": (header, body)})
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment_id=ctx.experiment_id)
        table = mlflow.load_table("tables/leaderboard.json", run_ids=[ctx.parent_run_id])
    finally:
        mlflow.set_tracking_uri(None)  # the global URI is also MLFLOW_TRACKING_URI, which later workers inherit
    assert list(table.columns) == ["rank", "model_l1", "valid_accuracy"]  # the UI reads dotted names as paths
    assert len(table) == 2  # not 4: the rerun replaced the table
    raw = json.loads(tracking.read_artifact_text(ctx, ctx.parent_run_id, "tables/leaderboard.json"))
    assert raw == {"columns": ["rank", "model_l1", "valid_accuracy"], "data": [[1, "1e-05", 0.94], [2, "0", 0.93]]}
    tags = tracking.client(uri).get_run(ctx.parent_run_id).data.tags
    assert json.loads(tags["mlflow.loggedArtifacts"]) == [{"path": "tables/leaderboard.json", "type": "table"}]
