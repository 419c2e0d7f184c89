"""Static checks of infra/compose and infra/docker (this machine has no Docker engine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "compose" / "compose.yaml"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")
PINNED = re.compile(r"^[\w.\-/]+:(?!latest$)\d[\w.\-]*$")  # repo:tag with a version-like tag


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


ONE_SHOT = {"mlflow-users"}  # setup jobs: exit 0 once, no healthcheck; dependants wait for their completion
WORKERS = ("prefect-worker", "dask-worker")  # run flows and trials: never hold a server secret


def test_compose_has_every_role(services):
    assert set(services) == {"postgres", "mlflow", "mlflow-users", "prefect-server", "prefect-worker",
                             "dask-scheduler", "dask-worker"}


def test_images_are_pinned_and_one_image_serves_every_sweepnet_role(services):
    images = {name: svc["image"] for name, svc in services.items()}
    assert all(PINNED.match(image) for image in images.values()), images
    sweepnet_roles = set(services) - {"postgres"}
    assert {images[name] for name in sweepnet_roles} == {"sweepnet:0.1.0"}
    builds = {services[name]["build"]["dockerfile"] for name in sweepnet_roles}
    assert builds == {"infra/docker/Dockerfile"}


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(services):
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc["restart"] == "no" and "healthcheck" not in svc, name
        else:
            assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, cond in svc.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert dep in services and cond == {"condition": wanted}, (name, dep)
    assert set(services["mlflow"]["depends_on"]) == {"postgres"}
    assert set(services["prefect-server"]["depends_on"]) == {"postgres"}
    assert set(services["mlflow-users"]["depends_on"]) == {"mlflow"}
    assert set(services["prefect-worker"]["depends_on"]) >= {"prefect-server", "mlflow-users"}
    assert set(services["dask-worker"]["depends_on"]) >= {"dask-scheduler", "mlflow-users"}


def test_published_ports_bind_loopback_unless_the_user_opts_in(services):
    published = [(name, port) for name, svc in services.items() for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"mlflow", "prefect-server", "dask-scheduler"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("${SWEEPNET_BIND:-127.0.0.1}:"), (name, port)
    assert "ports" not in services["postgres"] and "ports" not in services["dask-worker"]
    env_example = (INFRA / "compose" / ".env.example").read_text()
    assert re.search(r"^SWEEPNET_BIND=127\.0\.0\.1$", env_example, re.M)


def test_the_dask_scheduler_is_reachable_only_inside_the_compose_network(services, compose):
    published = [str(port) for svc in services.values() for port in svc.get("ports", [])]
    assert published and not [p for p in published if re.search(r"(^|:)8786($|/)", p)], published
    assert [p.rsplit(":", 1)[1] for p in services["dask-scheduler"]["ports"]] == ["8787"]  # dashboard only
    assert "DASK_SCHEDULER_PORT" not in (INFRA / "compose" / ".env.example").read_text()
    assert "expose" not in services["dask-scheduler"] and "network_mode" not in services["dask-scheduler"]


def test_the_scheduler_drops_a_silent_worker_within_a_minute(services):
    # Dask's default worker-ttl is 5 minutes: a dead worker container's chunks would wait that long.
    from app.services.starters import WORKER_TTL

    assert _env(services["dask-scheduler"]).get("DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL") == WORKER_TTL


def test_wiring_points_clients_at_the_services_by_name(services):
    mlflow_cmd = services["mlflow"]["command"]
    assert "--app-name=basic-auth" in mlflow_cmd and "--serve-artifacts" in mlflow_cmd
    assert any(arg.startswith("--artifacts-destination=") for arg in mlflow_cmd)
    assert "@postgres:5432/mlflow" in _env(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    assert _env(services["mlflow"])["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    prefect_env = _env(services["prefect-server"])
    assert (prefect_env["PREFECT_SERVER_DATABASE_HOST"], prefect_env["PREFECT_SERVER_DATABASE_NAME"]) \
        == ("postgres", "prefect")
    for client in ("prefect-worker", "dask-worker"):
        env = _env(services[client])
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["SWEEPNET_DASK_ADDRESS"] == "tcp://dask-scheduler:8786"
    worker_cmd = services["dask-worker"]["command"]
    assert worker_cmd[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert worker_cmd[worker_cmd.index("--nthreads") + 1] == "1"
    pool_cmd = services["prefect-worker"]["command"]
    assert pool_cmd[pool_cmd.index("--type") + 1] == "process"
    assert "never" == pool_cmd[pool_cmd.index("--install-policy") + 1]
    init = (INFRA / "compose" / "postgres" / "init-databases.sh").read_text()
    assert "CREATE DATABASE prefect" in init


def test_no_secret_is_committed(services):
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if any(word in key for word in SECRET_WORDS):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, key, value)
    for key, value in re.findall(r"^([A-Z_]+)=(.*)$", (INFRA / "compose" / ".env.example").read_text(),
                                 re.M):
        if any(word in key for word in SECRET_WORDS):
            assert value == "", f".env.example must leave {key} empty"
    for ini in (INFRA / "compose" / "mlflow" / "basic_auth.ini",):
        assert not re.search(r"^\s*admin_password\s*=", ini.read_text(), re.M)
    assert ".env" in (INFRA / "compose" / ".gitignore").read_text().split()


def test_workers_log_as_the_pipeline_user_and_hold_no_server_secret(services):
    server_secrets = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "POSTGRES_PASSWORD")
    for name in WORKERS:
        env = _env(services[name])
        assert env["MLFLOW_TRACKING_USERNAME"] == "sweepnet-pipeline", name
        assert env["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_PIPELINE_PASSWORD:?"), name
        for key, value in env.items():
            assert key not in server_secrets and not any(s in str(value) for s in server_secrets), (name, key)
            assert "ADMIN" not in key and "admin" not in str(value), (name, key)
    setup = _env(services["mlflow-users"])  # the one place besides the server that holds the admin password
    assert setup["SWEEPNET_PIPELINE_USERNAME"] == "sweepnet-pipeline"
    assert services["mlflow-users"]["command"] == ["python", "/etc/mlflow/create-pipeline-user.py"]
    env_example = (INFRA / "compose" / ".env.example").read_text()
    assert re.search(r"^MLFLOW_PIPELINE_PASSWORD=$", env_example, re.M)


def test_mlflow_auth_caches_verified_passwords():
    import configparser

    ini = configparser.ConfigParser()
    ini.read(INFRA / "compose" / "mlflow" / "basic_auth.ini")
    assert 0 < ini.getint("mlflow", "auth_cache_ttl_seconds") <= 300
    assert ini.get("mlflow", "default_permission") == "READ"


def test_nothing_is_installed_at_container_start(services):
    for name, svc in services.items():
        command = " ".join(svc.get("command", [])) if isinstance(svc.get("command"), list) \
            else str(svc.get("command", ""))
        assert "pip install" not in command and "entrypoint" not in svc, name


def test_dockerfile_is_pinned_warms_numba_and_has_a_writable_cache():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert PINNED.match(base), base
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}", text, re.M)
    assert "NUMBA_CACHE_DIR=/var/cache/sweepnet/numba" in text
    assert "chown -R sweepnet:sweepnet /var/cache/sweepnet" in text
    run_lines = re.findall(r"^RUN (.*)$", text, re.M)
    assert any("python -m pipeline.warmup" in line for line in run_lines)
    user_at = text.index("USER sweepnet")
    assert user_at < text.index("python -m pipeline.warmup")  # cache files owned by the runtime user
    assert "-c constraints.txt" in text
    for pin in re.findall(r'"([\w\-\[\]]+)==\$\{(\w+)\}"', text):
        assert re.search(rf"^ARG {pin[1]}=\d", text, re.M), pin
    assert not re.search(r"^(ENTRYPOINT|CMD).*pip install", text, re.M)


def test_constraints_pin_the_tested_stack():
    pins = dict(line.split("==", 1) for line in
                (INFRA / "docker" / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for name in ("numba", "numpy", "dask", "distributed", "prefect", "mlflow", "pyarrow"):
        assert name in pins, name
    assert pins["numba"] == "0.68.1" and pins["mlflow"] == "3.17.2" and pins["prefect"] == "3.9.1"


def test_the_image_installs_every_package_so_the_sweepnet_command_and_flow_entrypoint_import():
    """`sweepnet` (app.cli) and `flows.sweep:scheduled_sweep`, the deployments' entrypoint, come from the
    package installed in the image: every package pyproject.toml ships must be copied into the build."""
    import tomllib

    project = tomllib.loads((INFRA.parent / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    text = DOCKERFILE.read_text()
    ignore = (INFRA / "docker" / "Dockerfile.dockerignore").read_text().split()
    for pkg in packages:
        assert re.search(rf"^COPY {pkg} \./{pkg}$", text, re.M), pkg
        assert f"!{pkg}/" in ignore, pkg
    assert project["project"]["scripts"]["sweepnet"].split(".")[0] in packages


@pytest.mark.services
def test_the_setup_script_creates_a_pipeline_user_that_logs_but_cannot_administer(mlflow_auth_server,
                                                                                  monkeypatch):
    import os
    import secrets
    import subprocess
    import sys

    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    user, password = f"sweepnet-pipeline-{secrets.token_hex(3)}", secrets.token_urlsafe(18)
    env = {**os.environ, **mlflow_auth_server.env(), "SWEEPNET_PIPELINE_USERNAME": user,
           "SWEEPNET_PIPELINE_PASSWORD": password}
    script = [sys.executable, str(INFRA / "compose" / "mlflow" / "create-pipeline-user.py")]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and f"created MLflow user {user}" in first.stdout, first.stderr[-2000:]
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)  # idempotent
    assert again.returncode == 0 and "password updated" in again.stdout, again.stderr[-2000:]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(tracking_uri=mlflow_auth_server.uri)
    exp = client.create_experiment(f"pipeline-{user}")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "train_MSE", 0.25, step=1)
    assert client.get_run(run.info.run_id).data.metrics == {"train_MSE": 0.25}
    with pytest.raises(MlflowException, match="403"):  # user administration stays with the admin
        AuthServiceClient(mlflow_auth_server.uri).create_user(f"{user}-x", password)
    assert not AuthServiceClient(mlflow_auth_server.uri).get_user(user).is_admin
