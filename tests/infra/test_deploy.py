"""flows.deploy and `sweepnet deploy`: deployments that carry the sweep inline, name the store by URI and import
the flow from the installed package, so that they run on a worker with no checkout (process, docker and
kubernetes pools). Real `prefect server` (tests.services) and a real `prefect worker` started here; no mocks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from flows.deploy import ENTRYPOINT, inline_spec, read_job_template, store_uri
from pipeline import tracking
from pipeline.sweep import driver, load_sweep
from tests.prefect_rest import prefect_api

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S_TEMPLATE = INFRA / "k8s" / "prefect" / "kubernetes-job-template.yaml"
DOCKER_TEMPLATE = INFRA / "prefect" / "docker-job-template.yaml"
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
CLIENT_VARS = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS", "PYTHONPATH",
               "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(extra)
    return env


_api = prefect_api


def _deploy(args: list[str], api: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "deploy", *args], cwd=cwd, capture_output=True, text=True,
                          env=_env(PREFECT_API_URL=api, PYTHONPATH=str(ROOT)), timeout=300)


def _deployment_id(out: str) -> str:
    return re.search(r"deployment ([0-9a-f-]{36}) scheduled", out).group(1)


# ------------------------------------------------------------------ no server
def test_inline_spec_is_self_contained_and_keeps_the_sweep_key(tmp_path):
    base = tmp_path / "configs" / "xor.yaml"
    base.parent.mkdir()
    base.write_text(yaml.safe_dump(XOR))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"name": "inline", "base": "configs/xor.yaml", "seeds": [1, 2],
                                    "space": {"model.rate": [0.01, 0.1]}}))
    raw = inline_spec(spec)
    assert raw["base"] == XOR and str(tmp_path) not in json.dumps(raw)
    # the worker computes the same sweep key from the inline spec, so reruns resume across deploy/sweep
    assert driver.sweep_key(load_sweep(raw), "d") == driver.sweep_key(load_sweep(spec), "d")
    with pytest.raises(ValueError, match="seeds"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({"name": "bad", "base": XOR, "seeds": 0}))
        inline_spec(bad)


def test_store_is_named_by_uri_without_credentials(tmp_path):
    assert store_uri(None) == (None, False)
    assert store_uri("http://sweepnet-pipeline:s3cret@mlflow:5000") == ("http://mlflow:5000", True)
    assert store_uri("sqlite:////srv/sweeps/mlflow.db") == ("sqlite:////srv/sweeps/mlflow.db", False)
    assert store_uri(tmp_path / "store") == (f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", False)
    with pytest.raises(ValueError, match="job_configuration and variables"):
        (tmp_path / "t.yaml").write_text("variables: {}\n")
        read_job_template(tmp_path / "t.yaml")


def test_scheduled_sweep_accepts_the_inline_spec_and_the_parameters_of_older_deployments():
    from flows.sweep import scheduled_sweep

    new = scheduled_sweep.validate_parameters({"spec": {"name": "x", "base": XOR}, "store": "http://mlflow:5000"})
    assert new["spec"] == {"name": "x", "base": XOR}
    old = scheduled_sweep.validate_parameters({"spec": "/srv/sweeps/x.yaml", "store_dir": "/srv/sweeps/store"})
    assert old["spec"] == "/srv/sweeps/x.yaml" and old["store_dir"] == "/srv/sweeps/store"


def test_the_docker_template_fixes_image_command_network_and_privileges():
    compose = yaml.safe_load((INFRA / "compose" / "compose.yaml").read_text())
    template = read_job_template(DOCKER_TEMPLATE)
    config, variables = template["job_configuration"], set(template["variables"]["properties"])
    assert not variables & {"image", "command", "networks", "network_mode", "volumes", "privileged",
                            "registry_credentials", "image_pull_policy"}
    assert set(re.findall(r"\{\{ *(\w+) *\}\}", DOCKER_TEMPLATE.read_text())) <= variables
    assert config["image"] == compose["services"]["dask-worker"]["image"]  # the image compose builds
    assert config["command"] == "prefect flow-run execute"
    assert config["networks"] == [f"{compose['name']}_default"] and config["privileged"] is False
    assert config["volumes"] == []
    env = template["variables"]["properties"]["env"]["default"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "sweepnet-pipeline"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "{{ prefect.blocks.secret.sweepnet-mlflow-pipeline }}"


# ------------------------------------------------------------------ a worker with sweepnet installed, no checkout
@pytest.fixture(scope="module")
def installed_sweepnet(tmp_path_factory) -> Path:
    """sweepnet built as a wheel from a copy of the sources and installed with ``pip --target``."""
    tmp = tmp_path_factory.mktemp("installed")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("kernels", "pipeline", "flows", "app"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "wheel"), str(src)], check=True, timeout=300,
                   cwd=tmp, env=_env())
    wheel = next((tmp / "wheel").glob("sweepnet-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "lib"), str(wheel)], check=True,
                   timeout=300, cwd=tmp, env=_env())
    shutil.rmtree(src)  # nothing of the sources is left but the installed package
    return tmp / "lib"


def _start_worker(pool: str, api: str, lib: Path, home: Path) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    env = _env(PYTHONPATH=str(lib), PREFECT_API_URL=api, PREFECT_HOME=str(home / "prefect"), HOME=str(home),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    cmd = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", pool, "--type", "process",
           "--install-policy", "never", "--name", f"{pool}-worker"]
    log = open(home / "worker.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if _api(f"{api}/work_pools/{pool}/workers/filter", {"limit": 5}):
            return proc
        time.sleep(2)
    _stop(proc)
    raise AssertionError(f"prefect worker for {pool} did not poll: {(home / 'worker.log').read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the worker's own process group (it and the flow runs it started), SIGKILL after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _trial_keys(db: Path) -> dict[str, list[str]]:
    """Statuses of every trial child in an MLflow sqlite file, by trial key (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("select t.value, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
                           "where t.key = ? and r.lifecycle_stage = 'active'", (tracking.TAG_KEY,)).fetchall()
    finally:
        con.close()
    keys: dict[str, list[str]] = {}
    for key, status in rows:
        keys.setdefault(key, []).append(status)
    return keys


@pytest.mark.services
@pytest.mark.slow  # make test runs the same on a separate worker host: tests/cluster/test_multihost.py
@pytest.mark.timeout(1500)  # a shared 2-core machine under load: the run alone has 1200 s below
def test_cron_deployment_runs_on_a_worker_without_the_checkout(tmp_path, prefect_server_url, installed_sweepnet):
    api = prefect_server_url
    pool = f"sweepnet-it-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"name": "anywhere", "base": XOR, "seeds": [1, 2],
                                    "objective": {"metric": "train_MSE"}, "space": {"model.hidden": [[2]]}}))
    db = tmp_path / "store" / "mlflow.db"
    dep = _deploy([str(spec), "--cron", "* * * * *", "--name", "anywhere", "--pool", pool, "--pool-type",
                   "process", "--store", f"sqlite:///{db}", "--workers", "1"], api)
    assert dep.returncode == 0, dep.stderr[-3000:]
    dep_id = _deployment_id(dep.stdout)
    worker = None
    try:
        record = _api(f"{api}/deployments/{dep_id}")
        assert record["entrypoint"] == ENTRYPOINT and record["path"] is None and not record["pull_steps"]
        assert record["parameters"]["spec"]["base"] == XOR and record["parameters"]["store"] == f"sqlite:///{db}"
        assert str(ROOT) not in json.dumps(record)  # nothing of the deploying checkout
        assert _api(f"{api}/work_pools/{pool}")["type"] == "process"

        worker = _start_worker(pool, api, installed_sweepnet, tmp_path / "worker-host")
        body = {"deployments": {"id": {"any_": [dep_id]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}, "limit": 5}
        # the next minute boundary, then a LocalCluster compiling every kernel of a fresh install (~1 min idle)
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline and not _api(f"{api}/flow_runs/filter", body):
            assert worker.poll() is None, (tmp_path / "worker-host" / "worker.log").read_text()[-3000:]
            time.sleep(5)
        runs = _api(f"{api}/flow_runs/filter", body)
        log = (tmp_path / "worker-host" / "worker.log").read_text()
        assert runs and runs[0]["state_type"] == "COMPLETED", (runs, log[-4000:])
        logs = _api(f"{api}/logs/filter", {"logs": {"flow_run_id": {"any_": [runs[0]["id"]]}}, "limit": 200})
        text = "\n".join(entry["message"] for entry in logs)
        assert f"sweepnet flows from {installed_sweepnet / 'flows'}" in text, text[-3000:]
        assert str(ROOT) not in text + log
        keys = _trial_keys(db)
        assert len(keys) == 2 and all(statuses == ["FINISHED"] for statuses in keys.values()), keys
    finally:  # the shared server must not keep firing this schedule
        _api(f"{api}/deployments/{dep_id}", method="DELETE")
        if worker is not None:
            _stop(worker)


# ------------------------------------------------------------------ image pools (no engine here: registered, not run)
@pytest.mark.services
@pytest.mark.parametrize("kind,template", [("kubernetes", K8S_TEMPLATE), ("docker", DOCKER_TEMPLATE)])
def test_image_pool_deployment_uses_the_pools_fixed_image_and_command(tmp_path, prefect_server_url, kind,
                                                                      template):
    api = prefect_server_url
    pool = f"sweepnet-{kind}-{uuid.uuid4().hex[:8]}"
    args = [str(ROOT / "examples" / "sweeps" / "xor_census.yaml"), "--cron", "0 3 * * *", "--name", pool,
            "--pool", pool, "--pool-type", kind, "--store", "http://sweepnet-pipeline:pw@mlflow:5000"]
    refused = _deploy(args, api)
    assert refused.returncode != 0 and f"--job-template {template.relative_to(ROOT)}" in refused.stderr
    dep = _deploy([*args, "--job-template", str(template)], api, cwd=tmp_path)
    assert dep.returncode == 0, dep.stderr[-3000:]
    assert "credentials removed" in dep.stderr and "pw@" not in dep.stdout + dep.stderr
    dep_id = _deployment_id(dep.stdout)
    try:
        record = _api(f"{api}/deployments/{dep_id}")
        assert record["entrypoint"] == ENTRYPOINT and record["path"] is None and not record["pull_steps"]
        assert record["parameters"]["store"] == "http://mlflow:5000" and not record["job_variables"]
        assert str(ROOT) not in json.dumps(record)
        pool_record = _api(f"{api}/work_pools/{pool}")
        assert pool_record["type"] == kind
        assert pool_record["base_job_template"] == read_job_template(template)
        # a second deploy with another type is refused instead of landing on the wrong infrastructure
        other = "docker" if kind == "kubernetes" else "kubernetes"
        wrong = _deploy([*args[:-2], "--pool-type", other], api)
        assert wrong.returncode != 0 and f"exists with type '{kind}'" in wrong.stderr
    finally:
        _api(f"{api}/deployments/{dep_id}", method="DELETE")
        _api(f"{api}/work_pools/{pool}", method="DELETE")


# ------------------------------------------------------------------ prefect.yaml
PREFECT_YAML = INFRA / "prefect" / "prefect.yaml"
POOLS = {"sweepnet-process": ("process", None), "sweepnet-docker": ("docker", DOCKER_TEMPLATE),
         "sweepnet-k8s": ("kubernetes", K8S_TEMPLATE)}


def test_prefect_yaml_describes_installed_package_deployments_of_the_example_sweep():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    assert config["pull"] == [] and config["build"] is None and config["push"] is None
    example = load_sweep(ROOT / "examples" / "sweeps" / "xor_census.yaml")
    assert {d["work_pool"]["name"] for d in config["deployments"]} == set(POOLS)
    for dep in config["deployments"]:
        assert dep["entrypoint"] == ENTRYPOINT
        inline = load_sweep(dep["parameters"]["spec"])
        assert driver.sweep_key(inline, "d") == driver.sweep_key(example, "d"), dep["name"]  # the same sweep
        assert store_uri(dep["parameters"].get("store"))[1] is False  # no credentials in a parameter
        assert [s["cron"] for s in dep["schedules"]] == ["0 3 * * *"]


@pytest.mark.services
def test_prefect_deploy_registers_prefect_yaml_without_paths_of_this_machine(tmp_path, prefect_server_url):
    api = prefect_server_url
    created = []
    env = _env(PREFECT_API_URL=api, PYTHONPATH=str(ROOT), PREFECT_CLI_PROMPT="false")
    for pool, (kind, template) in POOLS.items():
        if _api(f"{api}/work_pools/filter", {"work_pools": {"name": {"any_": [pool]}}}) == []:
            body = {"name": pool, "type": kind}
            if template is not None:
                body["base_job_template"] = read_job_template(template)
            _api(f"{api}/work_pools/", body)
            created.append(pool)
    out = subprocess.run([str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all",
                          "--prefect-file", str(PREFECT_YAML)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    names = [d["name"] for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]]
    records = _api(f"{api}/deployments/filter", {"deployments": {"name": {"any_": names}}})
    try:
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        assert sorted(r["name"] for r in records) == sorted(names)
        for record in records:
            assert record["entrypoint"] == ENTRYPOINT and record["path"] is None and not record["pull_steps"]
            assert record["parameters"]["spec"]["name"] == "xor-init-census"
            assert str(tmp_path) not in json.dumps(record) and str(ROOT) not in json.dumps(record)
    finally:
        for record in records:
            _api(f"{api}/deployments/{record['id']}", method="DELETE")
        for pool in created:
            _api(f"{api}/work_pools/{pool}", method="DELETE")


@pytest.mark.services
def test_without_store_the_deployment_names_none_and_the_worker_decides(tmp_path, prefect_server_url):
    api = prefect_server_url
    pool = f"sweepnet-default-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"name": "nostore", "base": XOR, "seeds": [1]}))
    dep = _deploy([str(spec), "--cron", "0 3 * * *", "--pool", pool], api, cwd=tmp_path)
    assert dep.returncode == 0, dep.stderr[-3000:]
    dep_id = _deployment_id(dep.stdout)
    try:
        record = _api(f"{api}/deployments/{dep_id}")
        assert set(record["parameters"]) == {"spec"} and record["name"] == "nostore"
        assert str(tmp_path) not in json.dumps(record)  # not even the default store resolved here
        assert _api(f"{api}/work_pools/{pool}")["type"] == "process"  # created with the default type
    finally:
        _api(f"{api}/deployments/{dep_id}", method="DELETE")
        _api(f"{api}/work_pools/{pool}", method="DELETE")
