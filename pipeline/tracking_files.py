"""Artifact transfers of one run, beside :mod:`pipeline.tracking` (the adapter, at its size limit).

The summary draws the top trials' pictures from files their children logged (:mod:`pipeline.sweep.topk`):
it downloads them here and uploads the drawings back to the same child, one ``log_artifacts`` call a child.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.tracking import TrackingContext, client, uri_for

__all__ = ["download", "upload"]


def download(ctx: TrackingContext, run_id: str, path: str, dst: str | Path) -> Path:
    """Artifact ``path`` of ``run_id`` (a file or a folder) copied under ``dst``; works for proxied stores."""
    return Path(client(uri_for(ctx)).download_artifacts(run_id, path, str(dst)))


def upload(ctx: TrackingContext, run_id: str, folder: str | Path) -> None:
    """Every file of ``folder`` as artifacts of ``run_id`` (also a finished run), in one call."""
    client(uri_for(ctx)).log_artifacts(run_id, str(folder))
