"""A sweep across separate hosts: services, scheduler, two workers and the driver each in a network namespace.

Hosts (``tests/cluster/netns.py``): ``svc`` runs MLflow (proxied artifacts) and Prefect through
``sweepnet services up --host <its address>``; ``sched`` runs ``dask scheduler``; ``w1``/``w2`` run one
``dask worker`` each; ``drv`` runs ``sweepnet sweep``. The scheduler and the workers import sweepnet from a
wheel installed into a folder of their own (no checkout on their ``sys.path``, nothing on disk shared with
the driver); the driver runs from the checkout. Every process is stopped by PID and the namespaces are
deleted at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.services import procs
from tests.cluster.netns import TestNet, available

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
SERVICE_ENV = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS", "PYTHONPATH",
               "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING")

pytestmark = [pytest.mark.services, pytest.mark.timeout(1500)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """sweepnet built as a wheel and installed into a folder: what a worker host has instead of a checkout."""
    folder = tmp_path_factory.mktemp("installed")
    wheels = folder / "wheels"
    subprocess.run([PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300, capture_output=True)
    target = folder / "site"
    subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    *map(str, wheels.glob("sweepnet-*.whl"))], check=True, timeout=300, capture_output=True)
    # compile the kernels once in the installed copy (Numba caches beside the sources), as an image build does
    subprocess.run([PY, "-c", "from pipeline.warmup import warm; warm()"], env=_env(PYTHONPATH=str(target)),
                   cwd=folder, check=True, timeout=600, capture_output=True)
    return target


@pytest.fixture(scope="module")
def hosts():
    ok, why = available()
    if not ok:
        pytest.fail(f"the multi-host tests need network namespaces: {why}")
    with TestNet(f"sn{os.getpid() % 100000}", ["svc", "sched", "w1", "w2", "drv"]) as net:
        yield net


class Stack:
    """The processes of one multi-host stack, for the tests to use and the fixture to stop."""

    def __init__(self, net: TestNet, root: Path, installed: Path):
        self.net, self.root, self.installed, self.records, self.env = net, root, installed, [], {}

    def spawn(self, host: str, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> procs.ProcRecord:
        cwd.mkdir(parents=True, exist_ok=True)
        rec = procs.spawn(self.root / "pids", name, host, [*self.net.exec_prefix(host), *cmd], env, cwd)
        self.records.append(rec)
        return rec

    def answers(self, url: str) -> bool:
        """Whether ``url`` answers 2xx/401 from the driver host (401: up, but wants credentials)."""
        out = self.net.run("drv", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", url])
        return out.stdout.strip() in ("200", "401")


def _services_up(stack: Stack, state: Path) -> dict[str, str]:
    """``sweepnet services up`` on the services host; returns the exported environment."""
    host = stack.net.address["svc"]
    cmd = [*stack.net.exec_prefix("svc"), PY, "-m", "app", "services", "up", "--only", "mlflow,prefect",
           "--host", host, "--state-dir", str(state), "--no-prefect-ui", "--timeout", "180"]
    out = subprocess.run(cmd, env=_env(PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    exports = dict(line[len("export "):].split("=", 1) for line in out.stdout.splitlines()
                   if line.startswith("export "))
    assert exports["MLFLOW_TRACKING_URI"].startswith(f"http://{host}:"), exports
    return exports


def _dask(stack: Stack, installed: Path, exports: dict[str, str]) -> str:
    address = f"tcp://{stack.net.address['sched']}:8786"
    site = {"PYTHONPATH": str(installed)}
    sched = stack.spawn("sched", "dask-scheduler", [PY, "-m", "distributed.cli.dask_scheduler", "--host",
                        stack.net.address["sched"], "--port", "8786", "--no-dashboard"], _env(**site),
                        stack.root / "sched")
    workers = []
    for host in ("w1", "w2"):
        workers.append(stack.spawn(host, f"dask-worker-{host}", [
            PY, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
            "--host", stack.net.address[host], "--no-dashboard", "--name", host,
            "--local-directory", str(stack.root / host / "dask")], _env(**site, **exports), stack.root / host))
    count = [PY, "-c", f"from distributed import Client; c = Client({address!r}, timeout=5); "
                       "print(len(c.nthreads()))"]
    procs.wait_until(lambda: stack.net.run("drv", count, env=_env(PYTHONPATH=str(ROOT))).stdout.strip() == "2",
                     [sched, *workers], "two workers on two hosts to register", 300, interval=2)
    return address


@pytest.fixture(scope="module")
def stack(hosts, installed, tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    st = Stack(hosts, root, installed)
    state = root / "svc" / "services"
    try:
        st.env = _services_up(st, state)
        st.env["SWEEPNET_DASK_ADDRESS"] = _dask(st, installed, st.env)
        yield st
    finally:
        for rec in reversed(st.records):
            procs.stop(rec, timeout=10)
        subprocess.run([PY, "-m", "app", "services", "down", "--state-dir", str(state)],
                       env=_env(PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, timeout=120)


def _mlflow_query(stack: Stack, code: str) -> object:
    """Run ``code`` (which prints JSON) with an MLflow client on the driver host."""
    out = stack.net.run("drv", [PY, "-c", code], env=_env(PYTHONPATH=str(ROOT), **stack.env), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_sweep_crosses_hosts_and_logs_every_trial_once(stack, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "multihost", "base": XOR, "seeds": [1, 2],
                                    "objective": {"metric": "train_MSE"},
                                    "space": {"model.hidden": [[2], [3]]}}))
    drv = tmp_path / "drv"
    drv.mkdir()
    run = stack.net.run("drv", [PY, "-m", "app", "sweep", str(spec), "--store", str(drv / "store"),
                                "--dask-address", stack.env["SWEEPNET_DASK_ADDRESS"]],
                        env=_env(PYTHONPATH=str(ROOT), **stack.env), cwd=drv, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "4 trials: 4 finished, 0 failed" in run.stdout
    kids = _mlflow_query(stack, (
        "import json, mlflow\n"
        "c = mlflow.MlflowClient()\n"
        "exp = c.get_experiment_by_name('multihost')\n"
        "runs = c.search_runs([exp.experiment_id], filter_string=\"tags.`sweepnet.kind` = 'trial'\")\n"
        "print(json.dumps([[r.data.tags['sweepnet.trial_key'], r.info.status,\n"
        "                   [a.path for a in c.list_artifacts(r.info.run_id)]] for r in runs]))\n"))
    keys = [k for k, _, _ in kids]
    assert len(keys) == 4 and len(set(keys)) == 4  # every trial once
    assert {s for _, s, _ in kids} == {"FINISHED"}
    assert all("learning_curve.png" in arts for _, _, arts in kids)  # artifacts went through the MLflow proxy
    # nothing landed in the driver's folder: the results live in the services host's MLflow
    assert not (drv / "store" / "mlflow.db").exists()
    # each worker host imports sweepnet from its installed copy, never from the driver's checkout
    where = _on_workers(stack, "lambda: __import__('pipeline').__file__")
    assert sorted(where) == ["w1", "w2"], where
    assert all(path.startswith(str(stack.installed)) for path in where.values()), where


def _on_workers(stack: Stack, fn: str) -> dict:
    """``fn`` run on every Dask worker (through a client on the driver host), keyed by worker name."""
    code = ("import json; from distributed import Client\n"
            f"c = Client({stack.env['SWEEPNET_DASK_ADDRESS']!r}, timeout=10)\n"
            "info = c.scheduler_info()['workers']\n"
            f"print(json.dumps({{info[a]['name']: v for a, v in c.run({fn}).items()}}))\n")
    out = stack.net.run("drv", [PY, "-c", code], env=_env(PYTHONPATH=str(ROOT)), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_host_reaches_another_hosts_loopback(stack):
    """The driver cannot use the services host's 127.0.0.1: the boundary is real."""
    port = stack.env["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1]
    assert stack.answers(stack.env["MLFLOW_TRACKING_URI"] + "/health")
    assert not stack.answers(f"http://127.0.0.1:{port}/health")
