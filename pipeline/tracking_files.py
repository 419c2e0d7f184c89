"""Artifact transfers of one run, beside :mod:`pipeline.tracking` (the adapter, at its size limit).

The summary draws the top trials' pictures from files their children logged (:mod:`pipeline.sweep.topk`):
it downloads them here and uploads the drawings back to the same child, one ``log_artifacts`` call a child.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.tracking import TrackingContext, client, uri_for

__all__ = ["download", "download_if_present", "upload", "upload_file"]


def download(ctx: TrackingContext, run_id: str, path: str, dst: str | Path) -> Path:
    """Artifact ``path`` of ``run_id`` (a file or a folder) copied under ``dst``; works for proxied stores."""
    return Path(client(uri_for(ctx)).download_artifacts(run_id, path, str(dst)))


def upload(ctx: TrackingContext, run_id: str, folder: str | Path) -> None:
    """Every file of ``folder`` as artifacts of ``run_id`` (also a finished run), in one call."""
    client(uri_for(ctx)).log_artifacts(run_id, str(folder))


def upload_file(ctx: TrackingContext, run_id: str, file: str | Path, artifact_path: str | None = None) -> None:
    """One file as an artifact of ``run_id`` under ``artifact_path`` (one request on a proxied store); a file of the
    same name there is replaced."""
    client(uri_for(ctx)).log_artifact(run_id, str(file), artifact_path)


def download_if_present(ctx: TrackingContext, run_id: str, path: str, dst: str | Path) -> Path | None:
    """Folder ``path`` of ``run_id`` copied under ``dst``, or ``None`` when the run has nothing there (one listing
    request, then the download)."""
    c = client(uri_for(ctx))
    if not c.list_artifacts(run_id, path):
        return None
    return Path(c.download_artifacts(run_id, path, str(dst)))
