"""Real local services: a real call to each, loopback-only listeners, MLflow basic auth, teardown.

No mocks: every test talks to processes started by ``app.services``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from app.services import free_port, http_status, read_state

pytestmark = pytest.mark.services

def _family(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _listening(state_dir: Path) -> list[tuple[str, str]]:
    """(process name, bound IP) of every TCP listener of every recorded process and its children."""
    out = []
    for name, rec in read_state(state_dir)["processes"].items():
        for proc in _family(rec["pid"]):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((name, conn.laddr.ip))
    return out


def test_every_listener_binds_loopback_only(local_services):
    # First in the module: local_services starts the three services concurrently.
    listeners = _listening(local_services.state_dir)
    assert {name.split("-")[0] for name, _ in listeners} == {"dask", "mlflow", "prefect"}
    assert all(ip == "127.0.0.1" for _, ip in listeners), listeners


def test_dask_round_trip_imports_project_on_worker(dask_cluster_address):
    from distributed import Client

    with Client(dask_cluster_address, timeout="30s") as client:
        workers = client.nthreads()
        # free_port lives in the project: unpickling it makes the worker import pipeline.
        port = client.submit(free_port, "127.0.0.1", pure=False).result(timeout=60)
        version = client.submit(importlib.metadata.version, "sweepnet", pure=False).result(60)
        worker_pids = set(client.run(os.getpid).values())
    assert len(workers) == 2 and set(workers.values()) == {1}
    assert 0 < port < 65536
    assert version == importlib.metadata.version("sweepnet")
    assert os.getpid() not in worker_pids and len(worker_pids) == 2


def test_dask_scheduler_forgets_a_silent_worker_in_a_minute_not_five(dask_cluster_address):
    # A worker host cut off the network holds its chunks until the scheduler drops it (worker-ttl): Dask's default
    # is 5 minutes; `services up` sets WORKER_TTL, as the compose and Kubernetes schedulers do.
    import dask
    from distributed import Client

    from app.services.starters import WORKER_TTL

    with Client(dask_cluster_address, timeout="30s") as client:
        ttl = client.run_on_scheduler(lambda: dask.config.get("distributed.scheduler.worker-ttl"))
    assert ttl == WORKER_TTL == "60s"


def test_mlflow_experiment_and_proxied_artifact_round_trip(mlflow_server_uri, tmp_path):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=mlflow_server_uri)
    exp_id = client.create_experiment(f"infra-smoke-{os.getpid()}-{tmp_path.name}")
    run = client.create_run(exp_id)
    client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (i + 1), 0, i) for i in range(5)])
    payload = tmp_path / "weights.json"
    payload.write_text(json.dumps({"w": [1, 2, 3]}))
    client.log_artifact(run.info.run_id, str(payload))
    client.set_terminated(run.info.run_id)
    fetched = client.download_artifacts(run.info.run_id, "weights.json", str(tmp_path / "back"))
    assert Path(fetched).read_text() == payload.read_text()
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied, no shared filesystem
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(5))


def test_prefect_flow_run_is_recorded_on_server(prefect_server_url):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    @flow(name="infra-smoke", persist_result=False)
    def add(a: int, b: int) -> int:
        return a + b

    with temporary_settings({PREFECT_API_URL: prefect_server_url}):
        state = add(2, 3, return_state=True)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
    assert state.result() == 5
    assert run.state.is_completed()


def test_prefect_process_worker_runs_a_deployment(prefect_server_url, sweepnet_service_pool,
                                                  tmp_path):
    from prefect import flow
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    (tmp_path / "hello.py").write_text(
        "from prefect import flow\n\n@flow(name='infra-hello')\ndef hello(n: int = 1) -> int:\n"
        "    import app.services  # the project is importable in the flow-run process\n"
        "    return n * 2\n")
    pool = read_state(sweepnet_service_pool.state_dir)["services"]["prefect"]["work_pool"]
    with temporary_settings({PREFECT_API_URL: prefect_server_url}):
        source = flow.from_source(source=str(tmp_path), entrypoint="hello.py:hello")
        source.deploy(name="infra-hello", work_pool_name=pool, print_next_steps=False)
        run = run_deployment("infra-hello/infra-hello", parameters={"n": 21}, timeout=180)
    assert run.state.is_completed(), run.state


def test_mlflow_basic_auth_rejects_anonymous_and_accepts_credentials(mlflow_auth_server,
                                                                    monkeypatch, tmp_path):
    from mlflow import MlflowClient

    search = f"{mlflow_auth_server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    creds = (mlflow_auth_server.username, mlflow_auth_server.password)
    assert http_status(f"{mlflow_auth_server.uri}/health") == 200
    assert http_status(search) == 401
    assert http_status(search, auth=(creds[0], "wrong")) == 401
    assert http_status(search, auth=creds) == 200
    for key, value in mlflow_auth_server.env().items():
        monkeypatch.setenv(key, value)
    client = MlflowClient()
    exp_id = client.create_experiment(f"auth-{tmp_path.name}")
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "loss", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    written = [p for p in mlflow_auth_server.state_dir.rglob("*")
               if p.is_file() and p.suffix != ".db" and creds[1].encode() in p.read_bytes()]
    assert written == []  # the password stays in the environment, never in a file


def _cli_round_trip(state: Path, only: str) -> None:
    """``up`` then ``status`` then ``down`` through the CLI; every started process must be gone."""
    cli = [sys.executable, "-m", "app", "services"]
    up = subprocess.run([*cli, "up", "--state-dir", str(state), "--only", only,
                         "--dask-workers", "1", "--no-prefect-ui", "--timeout", "240"],
                        capture_output=True, text=True, cwd=state.parent, timeout=300)
    assert up.returncode == 0, up.stderr
    exports = dict(line[len("export "):].split("=", 1) for line in up.stdout.splitlines())
    expected = {"dask": "SWEEPNET_DASK_ADDRESS", "mlflow": "MLFLOW_TRACKING_URI",
                "prefect": "PREFECT_API_URL"}
    assert set(exports) == {expected[name] for name in only.split(",")}
    recorded = read_state(state)["processes"]
    family = [p for rec in recorded.values() for p in _family(rec["pid"])]
    assert all(p.is_running() for p in family)
    if "SWEEPNET_DASK_ADDRESS" in exports and len(exports) > 1:
        from distributed import Client

        with Client(exports["SWEEPNET_DASK_ADDRESS"], timeout="30s") as client:
            seen = client.run(lambda: {k: os.environ.get(k) for k in exports})
        # Workers know where MLflow and Prefect are, so Prefect tasks never start their own server.
        for worker_env in seen.values():
            assert {k: v for k, v in worker_env.items() if k != "SWEEPNET_DASK_ADDRESS"} == \
                {k: v for k, v in exports.items() if k != "SWEEPNET_DASK_ADDRESS"}
    status = subprocess.run([*cli, "status", "--state-dir", str(state), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and json.loads(status.stdout)["env"] == exports
    down = subprocess.run([*cli, "down", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert sorted(down.stdout.removeprefix("stopped: ").strip().split(", ")) == sorted(recorded)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []
    assert read_state(state)["processes"] == {} and not list((state / "pids").iterdir())


def test_cli_up_status_down_dask_leaves_no_process(tmp_path):
    # scheduler + worker process + its nanny-spawned child: the group kill must reach all three
    _cli_round_trip(tmp_path / "state", "dask")


def test_cli_up_status_down_all_services_leaves_no_process(tmp_path):
    _cli_round_trip(tmp_path / "state", "dask,mlflow,prefect")


def _services_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    return subprocess.run([sys.executable, "-m", "app", "services", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}, timeout=timeout)


def test_cli_up_mlflow_workers_serves_with_that_many_server_workers(tmp_path):
    state = tmp_path / "state"
    up = _services_cli("up", "--state-dir", str(state), "--only", "mlflow", "--mlflow-workers", "2",
                       "--timeout", "240")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        rec = read_state(state)["processes"]["mlflow-server"]
        assert rec["cmd"][rec["cmd"].index("--workers") + 1] == "2"
        assert read_state(state)["services"]["mlflow"]["workers"] == 2
        # uvicorn's supervisor spawns one process per worker (multiprocessing spawn)
        spawned = [p for p in _family(rec["pid"]) if "spawn_main" in " ".join(p.cmdline())]
        assert len(spawned) == 2
        uri = next(line.split("=", 1)[1] for line in up.stdout.splitlines() if "MLFLOW_TRACKING_URI=" in line)
        assert http_status(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1") == 200
    finally:
        down = _services_cli("down", "--state-dir", str(state), timeout=120)
    assert down.returncode == 0 and "mlflow-server" in down.stdout


def test_cli_up_refuses_zero_mlflow_workers_before_starting_anything(tmp_path):
    up = _services_cli("up", "--state-dir", str(tmp_path / "state"), "--only", "mlflow", "--mlflow-workers", "0")
    assert up.returncode == 1
    assert "mlflow_workers=0" in up.stderr and "--mlflow-workers 1 or more" in up.stderr
    assert read_state(tmp_path / "state")["processes"] == {}
    helptext = _services_cli("up", "--help").stdout
    assert "--mlflow-workers N" in helptext and "auth credential cache" in helptext
