"""Credentials never travel inside URIs: strip ``user:password@`` from anything that reaches MLflow params or
tags, Prefect parameters, logs or summaries, and move it into the variables MLflow reads instead."""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from urllib.parse import unquote, urlsplit

# userinfo: what follows "scheme://" up to an "@" before the host ends (no "/", "?", "#" or blank on the way)
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")


def redact_text(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URI in it removed."""
    return _USERINFO.sub("", text)


def redact_uri(uri: str) -> str:
    """``http://user:pw@host:5000`` -> ``http://host:5000``; URIs without userinfo are returned unchanged."""
    return redact_text(uri)


def credentials_to_env(env: MutableMapping[str, str] | None = None) -> None:
    """Move ``user:password@`` of ``MLFLOW_TRACKING_URI`` into ``MLFLOW_TRACKING_USERNAME/PASSWORD``.

    Call at the front door, before Prefect records the URI as a flow parameter or a Dask cluster inherits the
    environment. Variables already set win over the URI's userinfo.
    """
    env = os.environ if env is None else env
    uri = env.get("MLFLOW_TRACKING_URI", "")
    parts = urlsplit(uri) if _USERINFO.search(uri) else None
    if parts is None:
        return
    if parts.username:
        env.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username))
    if parts.password:
        env.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password))
    env["MLFLOW_TRACKING_URI"] = redact_uri(uri)
