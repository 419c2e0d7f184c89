"""The sweep's summary as Prefect artifacts on the flow run: the leaderboard as a table, the census as
Markdown, and a link to the MLflow parent run (training view). Prefect calls live here, never in ``pipeline``."""

from __future__ import annotations

import re

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

MAX_TABLE_ROWS = 500  # the artifact page renders every row; the full leaderboard is on the MLflow parent


def artifact_key(sweep_name: str, what: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for ``what`` of sweep ``sweep_name``."""
    slug = re.sub(r"[^a-z0-9]+", "-", sweep_name.lower()).strip("-") or "sweep"
    return f"{slug}-{what}"


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(sweep_name: str, result: dict) -> list[str]:
    """Leaderboard table, census Markdown and the MLflow parent link on the current flow run; their keys."""
    keys = []
    header, body = result["tables"]["leaderboard"]
    rows = [dict(zip(header, (str(c) for c in row))) for row in body[:MAX_TABLE_ROWS]]
    more = f" (first {MAX_TABLE_ROWS} of {len(body)} rows)" if len(body) > MAX_TABLE_ROWS else ""
    if rows:
        keys.append(artifact_key(sweep_name, "leaderboard"))
        create_table_artifact(rows, key=keys[-1], description=f"Leaderboard of sweep {sweep_name}, best first{more}; "
                              f"MLflow parent run: {result.get('parent_url', '')}")
    keys.append(artifact_key(sweep_name, "census"))
    notes = "".join(f"**{result[n]}**\n\n" for n in ("failure_note", "selection_note") if result.get(n))
    create_markdown_artifact(f"# Initialisation census of {sweep_name}\n\n{notes}{result['census_md']}",
                             key=keys[-1], description=f"Census of sweep {sweep_name} per configuration")
    if result.get("parent_url"):
        keys.append(artifact_key(sweep_name, "mlflow-parent"))
        create_link_artifact(result["parent_url"], link_text=f"MLflow parent run of {sweep_name} (training view)",
                             key=keys[-1], description="children, leaderboard and census tables, champion")
    return keys
