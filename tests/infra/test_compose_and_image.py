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


def test_compose_has_every_role(services):
    assert set(services) == {"postgres", "mlflow", "prefect-server", "prefect-worker",
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
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services and cond == {"condition": "service_healthy"}, (name, dep)
    assert set(services["mlflow"]["depends_on"]) == {"postgres"}
    assert set(services["prefect-server"]["depends_on"]) == {"postgres"}
    assert set(services["prefect-worker"]["depends_on"]) >= {"prefect-server", "mlflow"}
    assert set(services["dask-worker"]["depends_on"]) >= {"dask-scheduler"}


def test_published_ports_bind_loopback_unless_the_user_opts_in(services):
    published = [(name, port) for name, svc in services.items() for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"mlflow", "prefect-server", "dask-scheduler"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("${SWEEPNET_BIND:-127.0.0.1}:"), (name, port)
    assert "ports" not in services["postgres"] and "ports" not in services["dask-worker"]
    env_example = (INFRA / "compose" / ".env.example").read_text()
    assert re.search(r"^SWEEPNET_BIND=127\.0\.0\.1$", env_example, re.M)


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
