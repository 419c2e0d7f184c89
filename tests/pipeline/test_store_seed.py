"""pipeline.store_seed: a fresh sqlite MLflow store copied from a migrated template is the store MLflow makes."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline import store_seed


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(store_seed.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_seeded_store_has_mlflows_schema_and_default_experiment(tmp_path, cache, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    seeded, plain = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    assert store_seed.seed_sqlite_store(f"sqlite:///{seeded}") is True
    assert store_seed.template_path().exists() and store_seed.template_path().parent == cache
    plain.parent.mkdir()
    MlflowClient(f"sqlite:///{plain}").search_experiments()  # MLflow's own migrations
    tables = "select name from sqlite_master where type = 'table' order by name"
    assert _rows(seeded, tables) == _rows(plain, tables)
    assert _rows(seeded, "select * from alembic_version") == _rows(plain, "select * from alembic_version")
    default = "select experiment_id, name, artifact_location from experiments"
    assert _rows(seeded, default) == _rows(plain, default)  # experiment 0 where MLflow would have put it
    c = MlflowClient(f"sqlite:///{seeded}")  # opens without migrating, and works
    exp = c.create_experiment("seeded")
    run = c.create_run(exp)
    c.log_metric(run.info.run_id, "m", 1.0)
    assert c.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_an_existing_store_or_another_kind_of_store_is_never_touched(tmp_path, cache):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a template")
    assert store_seed.seed_sqlite_store(f"sqlite:///{db}") is False
    assert db.read_bytes() == b"not a template"
    assert store_seed.seed_sqlite_store("http://127.0.0.1:5000") is False
    assert store_seed.seed_sqlite_store("file:./mlruns") is False
    assert not cache.exists()  # no template made for nothing
