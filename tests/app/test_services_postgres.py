"""``sweepnet services up --backend postgres``: a real PostgreSQL cluster under the state directory holds MLflow's
backend store and the Prefect database; ``down`` leaves no process. No mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from app.services import read_state
from tests.services import postgres_state_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SWEEPNET_DASK_ADDRESS"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "app", "services", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _exports(stdout: str) -> dict[str, str]:
    return dict(line[len("export "):].split("=", 1) for line in stdout.splitlines() if line.startswith("export "))


def _superuser_sql(state: Path, database: str, query: str) -> list[tuple]:
    import psycopg2

    info = read_state(state)["services"]["postgres"]
    password = (state / "secrets" / "postgres-superuser").read_text().strip()
    with psycopg2.connect(host=info["host"], port=info["port"], user="sweepnet", password=password,
                          dbname=database, connect_timeout=5) as con, con.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def test_up_backend_postgres_serves_mlflow_and_prefect_and_down_leaves_no_process(postgres_state_dir, tmp_path):
    from mlflow import MlflowClient
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    state = postgres_state_dir
    up = _cli("up", "--state-dir", str(state), "--only", "mlflow,prefect", "--backend", "postgres",
              "--no-prefect-ui", "--timeout", "240")
    assert up.returncode == 0, up.stderr[-3000:]
    env = _exports(up.stdout)
    assert set(env) == {"MLFLOW_TRACKING_URI", "PREFECT_API_URL"}  # loopback: no auth unless asked
    recorded = read_state(state)["processes"]
    assert set(recorded) == {"postgres", "mlflow-server", "prefect-server", "prefect-worker"}
    family = [p for rec in recorded.values()
              for p in [psutil.Process(rec["pid"]), *psutil.Process(rec["pid"]).children(recursive=True)]]
    info = read_state(state)["services"]
    assert info["mlflow"]["backend_store_uri"].startswith("postgresql+psycopg2://127.0.0.1:")
    assert info["prefect"]["database"].startswith("postgresql+asyncpg://127.0.0.1:")
    assert psutil.Process(recorded["postgres"]["pid"]).username() == "postgres"

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.create_run(client.create_experiment(f"pg-{tmp_path.name}"), tags={"where": "postgres"})
    client.log_param(run.info.run_id, "rate", "0.05")
    back = client.get_run(run.info.run_id)
    assert back.data.params == {"rate": "0.05"} and back.data.tags["where"] == "postgres"
    # the run is a row of the Postgres database, not of some SQLite file
    assert _superuser_sql(state, "mlflow", f"select run_uuid from runs where run_uuid = '{run.info.run_id}'")

    @flow(name="pg-smoke", persist_result=False)
    def add(a: int, b: int) -> int:
        return a + b

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        flow_state = add(2, 3, return_state=True)
        with get_client(sync_client=True) as prefect_client:
            flow_run = prefect_client.read_flow_run(flow_state.state_details.flow_run_id)
    assert flow_state.result() == 5 and flow_run.state.is_completed()
    rows = _superuser_sql(state, "prefect", f"select state_type from flow_run where id = '{flow_run.id}'")
    assert rows == [("COMPLETED",)]

    status = _cli("status", "--state-dir", str(state), "--json", timeout=120)
    assert status.returncode == 0 and json.loads(status.stdout)["env"] == env
    down = _cli("down", "--state-dir", str(state), timeout=120)
    assert down.returncode == 0, down.stderr
    assert sorted(down.stdout.removeprefix("stopped: ").strip().split(", ")) == sorted(recorded)
    _, alive = psutil.wait_procs(family, timeout=15)
    assert alive == []
    assert read_state(state)["processes"] == {}


def test_postgres_refuses_a_login_without_the_password(postgres_state_dir):
    import psycopg2

    from app.services import start_postgres, stop_services

    info = start_postgres(postgres_state_dir)
    try:
        for user, password in (("sweepnet", None), ("mlflow", "wrong"), ("prefect", "")):
            with pytest.raises(psycopg2.OperationalError, match="password"):
                psycopg2.connect(host=info["host"], port=info["port"], user=user, password=password,
                                 dbname="postgres", connect_timeout=5)
        secrets = postgres_state_dir / "secrets"
        assert {oct(p.stat().st_mode & 0o777) for p in secrets.iterdir()} == {"0o600"}
        assert not (postgres_state_dir / "postgres" / "pwfile").exists()
    finally:
        assert stop_services(postgres_state_dir, only="postgres") == ["postgres"]
