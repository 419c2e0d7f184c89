"""Cluster mode across separate hosts, locked down: each host a network namespace (``tests/cluster/netns.py``).

- ``svc``: ``sweepnet services up --backend postgres --host <its address>``: PostgreSQL (on the host's
  loopback) under MLflow (basic auth, proxied artifacts, a non-admin pipeline user) and Prefect (API auth
  string); auth is on because the address is not loopback.
- ``sched``: ``dask scheduler`` with TLS (certificates from ``app.services.credentials``, distributed by copy).
- ``w1``, ``w2``: one ``dask worker`` each with TLS; ``w1`` also runs a ``prefect worker`` for scheduled
  sweeps. They import sweepnet from a wheel installed into a folder of their own (no checkout on their
  ``sys.path``) and share nothing on disk with the driver.
- ``drv``: ``sweepnet sweep`` / ``sweepnet deploy`` from the checkout, with the exported credentials only.

Every process is stopped by PID, the namespaces are deleted and the state folders removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from app.services import credentials, procs
from tests.cluster.netns import TestNet, available

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
CLIENT_VARS = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS", "PYTHONPATH", "PREFECT_HOME",
               "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING")
POOL = "sweepnet-hosts"

pytestmark = [pytest.mark.services, pytest.mark.timeout(1800)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS and not k.startswith("DASK_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    return env


def _spec(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": XOR, "seeds": [1, 2], "objective": {"metric": "train_MSE"},
                                    "space": {"model.hidden": [[2], [3]]}}))
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """sweepnet built as a wheel and installed into a folder: what a worker host has instead of a checkout."""
    folder = tmp_path_factory.mktemp("installed")
    wheels = folder / "wheels"
    subprocess.run([PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300, capture_output=True, cwd=folder)
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
    """The processes, addresses and credentials of one multi-host stack."""

    def __init__(self, net: TestNet, root: Path, installed: Path):
        self.net, self.root, self.installed = net, root, installed
        self.records: list[procs.ProcRecord] = []
        self.exports: dict[str, str] = {}  # what `services up` printed for clients
        self.dask: dict[str, str] = {}  # the driver's Dask TLS client settings + address

    def spawn(self, host: str, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> procs.ProcRecord:
        cwd.mkdir(parents=True, exist_ok=True)
        rec = procs.spawn(self.root / "procs", name, host, [*self.net.exec_prefix(host), *cmd], env, cwd)
        self.records.append(rec)
        return rec

    def driver_env(self, **extra: str) -> dict[str, str]:
        return _env(**{"PYTHONPATH": str(ROOT), **self.exports, **self.dask, **extra})

    def on_driver(self, code: str, env: dict[str, str] | None = None, timeout: float = 120) -> object:
        """Run Python ``code`` (its last line of output is JSON) on the driver host."""
        out = self.net.run("drv", [PY, "-c", code], env=env or self.driver_env(), timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def http(self, url: str, *args: str) -> str:
        """HTTP status of a request from the driver host (curl)."""
        out = self.net.run("drv", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10", *args, url])
        return out.stdout.strip()


def _services_up(stack: Stack, state: Path) -> dict[str, str]:
    """``sweepnet services up`` on the services host, auth on by default beyond loopback; the exports."""
    host = stack.net.address["svc"]
    cmd = [*stack.net.exec_prefix("svc"), PY, "-m", "app", "services", "up", "--only", "mlflow,prefect",
           "--backend", "postgres", "--host", host, "--state-dir", str(state), "--no-prefect-ui", "--timeout", "240"]
    out = subprocess.run(cmd, env=_env(PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    exports = dict(shlex.split(line[len("export "):])[0].split("=", 1) for line in out.stdout.splitlines()
                   if line.startswith("export "))
    assert exports["MLFLOW_TRACKING_URI"].startswith(f"http://{host}:"), exports
    assert exports["MLFLOW_TRACKING_USERNAME"] != "admin" and "PREFECT_API_AUTH_STRING" in exports  # locked
    return exports


def _copy_certs(tls: dict[str, str], dest: Path, role: str) -> dict[str, str]:
    """The CA and one role's certificate + key, copied to a host's own folder (as an operator distributes them)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("ca", role, f"{role}-key"):
        out[name] = str(shutil.copy(tls[name], dest / Path(tls[name]).name))
    return out


def _tls_server_args(certs: dict[str, str]) -> list[str]:
    return ["--protocol", "tls", "--tls-ca-file", certs["ca"], "--tls-cert", certs["server"],
            "--tls-key", certs["server-key"]]


def _dask(stack: Stack) -> None:
    """A TLS scheduler on ``sched`` and one TLS worker on each of ``w1``/``w2``; the driver's client settings."""
    sched_ip = stack.net.address["sched"]
    tls = credentials.dask_tls(stack.root / "sched" / "state", [sched_ip])
    address = f"tls://{sched_ip}:8786"
    site = {"PYTHONPATH": str(stack.installed)}
    certs = _copy_certs(tls, stack.root / "sched" / "certs", "server")
    sched = stack.spawn("sched", "dask-scheduler", [PY, "-m", "distributed.cli.dask_scheduler", "--host", sched_ip,
                        "--port", "8786", "--no-dashboard", *_tls_server_args(certs)], _env(**site),
                        stack.root / "sched")
    workers = []
    for host in ("w1", "w2"):
        mine = _copy_certs(tls, stack.root / host / "certs", "server")
        workers.append(stack.spawn(host, f"dask-worker-{host}", [
            PY, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
            "--host", stack.net.address[host], "--no-dashboard", "--name", host, *_tls_server_args(mine),
            "--local-directory", str(stack.root / host / "dask")], _env(**site, **stack.exports), stack.root / host))
    client = _copy_certs(tls, stack.root / "drv" / "certs", "client")
    stack.dask = {**credentials.dask_tls_env(client), "SWEEPNET_DASK_ADDRESS": address}
    count = f"from distributed import Client; print(len(Client({address!r}, timeout=5).nthreads()))"
    procs.wait_until(lambda: stack.net.run("drv", [PY, "-c", count], env=stack.driver_env()).stdout.strip() == "2",
                     [sched, *workers], "two TLS workers on two hosts to register", 300, interval=2)


def _prefect_worker(stack: Stack) -> None:
    """``prefect worker`` on ``w1`` with the installed package, polling a process pool for scheduled sweeps."""
    home = stack.root / "w1" / "prefect-worker"
    home.mkdir(parents=True, exist_ok=True)
    env = _env(PYTHONPATH=str(stack.installed), HOME=str(home), PREFECT_HOME=str(home / "prefect"), **stack.exports)
    rec = stack.spawn("w1", "prefect-worker-w1", [str(Path(PY).with_name("prefect")), "worker", "start", "--pool",
                      POOL, "--type", "process", "--install-policy", "never", "--name", "w1"], env, home)
    api, auth = stack.exports["PREFECT_API_URL"], stack.exports["PREFECT_API_AUTH_STRING"]
    polling = [*stack.net.exec_prefix("drv"), "curl", "-s", "-m", "10", "-u", auth, "-H",
               "Content-Type: application/json", "-d", "{}", f"{api}/work_pools/{POOL}/workers/filter"]
    procs.wait_until(lambda: '"name":"w1"' in subprocess.run(polling, capture_output=True, text=True,
                                                             timeout=30).stdout.replace(" ", ""),
                     [rec], "the prefect worker on w1 to poll its pool", 240, interval=2)


@pytest.fixture(scope="module")
def stack(hosts, installed):
    # PostgreSQL runs as the `postgres` user, which must be able to traverse the state folder's parents
    root = Path(tempfile.mkdtemp(prefix="sweepnet-hosts-", dir="/tmp"))
    root.chmod(0o711)
    st = Stack(hosts, root, installed)
    state = root / "svc" / "services"
    try:
        st.exports = _services_up(st, state)
        _dask(st)
        _prefect_worker(st)
        yield st
    finally:
        for rec in reversed(st.records):
            procs.stop(rec, timeout=10)
        subprocess.run([PY, "-m", "app", "services", "down", "--state-dir", str(state)],
                       env=_env(PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, timeout=180)
        shutil.rmtree(root, ignore_errors=True)


def _children(stack: Stack, experiment: str) -> list:
    return stack.on_driver(
        "import json, mlflow\n"
        "c = mlflow.MlflowClient()\n"
        f"exp = c.get_experiment_by_name({experiment!r})\n"
        "runs = c.search_runs([exp.experiment_id], filter_string=\"tags.`sweepnet.kind` = 'trial'\") if exp else []\n"
        "print(json.dumps([[r.data.tags['sweepnet.trial_key'], r.info.status,\n"
        "                   [a.path for a in c.list_artifacts(r.info.run_id)]] for r in runs]))\n")


def test_a_sweep_crosses_hosts_and_logs_every_trial_once(stack, tmp_path):
    drv = tmp_path / "drv"
    drv.mkdir()
    run = stack.net.run("drv", [PY, "-m", "app", "sweep", str(_spec(tmp_path, "multihost")), "--store",
                                str(drv / "store"), "--dask-address", stack.dask["SWEEPNET_DASK_ADDRESS"]],
                        env=stack.driver_env(), cwd=drv, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "4 trials: 4 finished, 0 failed" in run.stdout
    kids = _children(stack, "multihost")
    keys = [k for k, _, _ in kids]
    assert len(keys) == 4 and len(set(keys)) == 4  # every trial once
    assert {s for _, s, _ in kids} == {"FINISHED"}
    assert all("learning_curve.png" in arts for _, _, arts in kids)  # artifacts went through the MLflow proxy
    assert not (drv / "store" / "mlflow.db").exists()  # the results live on the services host
    assert stack.exports["MLFLOW_TRACKING_PASSWORD"] not in run.stdout + run.stderr
    # each worker host imports sweepnet from its installed copy, never from the driver's checkout
    where = stack.on_driver(
        "import json; from distributed import Client\n"
        f"c = Client({stack.dask['SWEEPNET_DASK_ADDRESS']!r}, timeout=10)\n"
        "names = {a: w['name'] for a, w in c.scheduler_info()['workers'].items()}\n"
        "print(json.dumps({names[a]: p for a, p in c.run(lambda: __import__('pipeline').__file__).items()}))\n")
    assert sorted(where) == ["w1", "w2"] and all(p.startswith(str(stack.installed)) for p in where.values()), where


def test_every_service_refuses_a_client_without_credentials(stack, tmp_path):
    mlflow, api = stack.exports["MLFLOW_TRACKING_URI"], stack.exports["PREFECT_API_URL"]
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    user, password = stack.exports["MLFLOW_TRACKING_USERNAME"], stack.exports["MLFLOW_TRACKING_PASSWORD"]
    assert stack.http(search) == "401" and stack.http(search, "-u", f"{user}:wrong") == "401"
    assert stack.http(search, "-u", f"{user}:{password}") == "200"
    flows = f"{api}/flow_runs/filter"
    post = ["-X", "POST", "-H", "Content-Type: application/json", "-d", "{}"]
    assert stack.http(flows, *post) == "401"
    assert stack.http(flows, *post, "-u", stack.exports["PREFECT_API_AUTH_STRING"]) == "200"
    # Dask: plain TCP and a TLS client without the CA's certificate are both refused
    address = stack.dask["SWEEPNET_DASK_ADDRESS"]
    probe = ("import json\nfrom distributed import Client\nfrom distributed.security import Security\n"
             "def connect(addr, sec):\n    try:\n        Client(addr, timeout=5, security=sec).close()\n"
             "        return 'connected'\n    except Exception as e:\n        return type(e).__name__\n"
             f"print(json.dumps([connect({address.replace('tls://', 'tcp://')!r}, Security()),\n"
             f"                  connect({address!r}, Security(require_encryption=True))]))\n")
    bare = _env(PYTHONPATH=str(ROOT))  # no TLS settings, no credentials
    assert "connected" not in stack.on_driver(probe, env=bare)
    # a sweep with a wrong MLflow password is refused and writes nothing
    drv = tmp_path / "drv"
    drv.mkdir()
    run = stack.net.run("drv", [PY, "-m", "app", "sweep", str(_spec(tmp_path, "denied")), "--store", str(drv / "s"),
                                "--dask-address", address, "--no-gradcheck"],
                        env=stack.driver_env(MLFLOW_TRACKING_PASSWORD="wrong"), cwd=drv, timeout=600)
    assert run.returncode != 0 and "401" in run.stderr + run.stdout, run.stderr[-3000:]
    assert _children(stack, "denied") == []


def test_a_scheduled_sweep_runs_on_a_worker_host(stack, tmp_path):
    api, auth = stack.exports["PREFECT_API_URL"], stack.exports["PREFECT_API_AUTH_STRING"]
    dep = stack.net.run("drv", [PY, "-m", "app", "deploy", str(_spec(tmp_path, "scheduled-hosts")), "--cron",
                                "* * * * *", "--name", "hosts-every-minute", "--pool", POOL, "--store",
                                stack.exports["MLFLOW_TRACKING_URI"]], env=stack.driver_env(), cwd=tmp_path,
                        timeout=300)
    assert dep.returncode == 0, dep.stderr[-3000:]
    dep_id = re.search(r"deployment ([0-9a-f-]{36}) scheduled", dep.stdout).group(1)
    finished = ("import json, httpx, os\n"
                f"r = httpx.post({api + '/flow_runs/filter'!r}, auth=tuple(os.environ['AUTH'].split(':', 1)),\n"
                f"    json={{'deployments': {{'id': {{'any_': [{dep_id!r}]}}}}, 'flow_runs': {{'state': {{'type': "
                "{'any_': ['COMPLETED', 'FAILED', 'CRASHED']}}}, 'limit': 5}, timeout=15)\n"
                "print(json.dumps([run['state_type'] for run in r.json()]))\n")
    try:
        deadline = time.monotonic() + 900  # the next minute boundary + a LocalCluster sweep on a busy machine
        states: list = []
        while time.monotonic() < deadline and not states:
            states = stack.on_driver(finished, env=stack.driver_env(AUTH=auth))
            time.sleep(5)
        assert states[:1] == ["COMPLETED"], states
        kids = _children(stack, "scheduled-hosts")
        assert len(kids) == 4 and len({k for k, _, _ in kids}) == 4 and {s for _, s, _ in kids} == {"FINISHED"}
        log = (stack.root / "procs" / "logs" / "prefect-worker-w1.log").read_text()
        where = re.findall(r"sweepnet flows from (\S+)", log)  # the flow run logs where it imported flows from
        assert where and all(w.startswith(str(stack.installed)) for w in where), log[-3000:]
    finally:  # the server must not keep firing this schedule
        stack.net.run("drv", ["curl", "-s", "-m", "10", "-u", auth, "-X", "DELETE", f"{api}/deployments/{dep_id}"])


def test_no_host_reaches_another_hosts_loopback(stack):
    """The driver cannot use the services host's 127.0.0.1: the boundary is real."""
    port = stack.exports["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1]
    assert stack.http(stack.exports["MLFLOW_TRACKING_URI"] + "/health") == "200"
    assert stack.http(f"http://127.0.0.1:{port}/health") == "000"  # nothing listens there on this host
