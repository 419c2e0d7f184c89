"""A fresh local MLflow store from a migrated template: MLflow's schema migrations run once per MLflow
version on this machine, not once per store.

Creating an MLflow sqlite store runs ~90 alembic migrations (~7 s on a 2-core machine, most of a small
sweep's ``prepare``). The first store made by an MLflow version is migrated as usual into a template under
the cache directory (``SWEEPNET_CACHE_DIR``, default ``~/.cache/sweepnet``); every later fresh store is a copy
of it, with the default experiment's artifact location set as MLflow would have set it. A store that exists
is never touched.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

CACHE_ENV = "SWEEPNET_CACHE_DIR"


def cache_dir() -> Path:
    """``SWEEPNET_CACHE_DIR``, else ``~/.cache/sweepnet``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sweepnet")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` tracking URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri[len("sqlite:///"):].split("?")[0])


def template_path() -> Path:
    """Where the migrated empty store of the installed MLflow version lives."""
    from mlflow.version import VERSION

    return cache_dir() / f"mlflow-{VERSION}-empty.db"


def _make_template(template: Path) -> None:
    """Create and migrate an empty store beside ``template``, then move it into place (atomic)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
        db = Path(tmp) / "mlflow.db"
        store = SqlAlchemyStore(f"sqlite:///{db}", str(Path(tmp) / "mlruns"))
        store.engine.dispose()
        os.replace(db, template)


def _set_default_artifact_location(db: Path) -> None:
    """Experiment 0's artifact location as MLflow sets it for a new store (``./mlruns/0`` from here)."""
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    location = append_to_uri_path(resolve_uri_if_local("./mlruns"), "0")
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (location,))
    finally:
        con.close()


def seed_sqlite_store(tracking_uri: str) -> bool:
    """Make the store of a ``sqlite:///`` URI whose file does not exist yet a copy of the migrated template
    (made first when missing). Returns True when it did; False for other stores, an existing file, or when
    another process created the store meanwhile (MLflow then opens theirs)."""
    path = sqlite_path(tracking_uri)
    if path is None or path.exists():
        return False
    template = template_path()
    if not template.exists():
        _make_template(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.seed")
    try:
        shutil.copyfile(template, tmp)
        _set_default_artifact_location(tmp)
        os.link(tmp, path)  # never replaces a store another process made in the meantime
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
