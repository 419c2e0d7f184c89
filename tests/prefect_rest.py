"""Calls to a real Prefect server's REST API from tests, retried the way Prefect's own client retries them.

A Prefect server on SQLite answers ``503 Service Unavailable`` while its database is locked by another writer
(it maps SQLAlchemy's ``OperationalError`` to 503); under a loaded ``make test`` the shared session server
does this now and then. ``prefect.client`` retries 429/502/503 with backoff (``PREFECT_CLIENT_MAX_RETRIES``,
5 by default); these helpers do the same so that a test fails on what it checks, not on a busy database.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

RETRY_CODES = (429, 502, 503)


def prefect_api(url: str, body: dict | None = None, method: str | None = None, timeout: float = 15.0,
                retries: int = 5, backoff: float = 0.5):
    """JSON answer of ``method url`` (POST when ``body`` is given, else GET); retries 429/502/503."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
            return json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            if err.code not in RETRY_CODES or attempt == retries:
                raise
            time.sleep(backoff * 2 ** attempt)
