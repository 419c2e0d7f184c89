"""Cluster mode across separate hosts, locked down: the five-host stack of ``tests/cluster/stack.py`` (services,
scheduler, two workers with the package installed, driver; each a network namespace), started once for this
module by ``tests/cluster/fixtures.py``: a sweep crosses hosts and logs every trial once through the workers'
own tracking URI, every service refuses a client without credentials, a scheduled deployment runs on a worker
host, and no host reaches another's loopback."""

from __future__ import annotations

import re
import time

import pytest

from tests.cluster.stack import POOL, PY, ROOT, children, env, spec

pytestmark = [pytest.mark.services, pytest.mark.timeout(1800)]


def test_a_sweep_crosses_hosts_and_logs_every_trial_once(stack, tmp_path):
    drv = tmp_path / "drv"
    drv.mkdir()
    run = stack.net.run("drv", [PY, "-m", "app", "sweep", str(spec(tmp_path, "multihost")), "--store",
                                str(drv / "store"), "--dask-address", stack.dask["SWEEPNET_DASK_ADDRESS"]],
                        env=stack.driver_env(), cwd=drv, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "4 trials: 4 finished, 0 failed" in run.stdout
    kids = children(stack, "multihost")
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
    bare = env(PYTHONPATH=str(ROOT))  # no TLS settings, no credentials
    assert "connected" not in stack.on_driver(probe, env=bare)
    # a sweep with a wrong MLflow password is refused and writes nothing
    drv = tmp_path / "drv"
    drv.mkdir()
    run = stack.net.run("drv", [PY, "-m", "app", "sweep", str(spec(tmp_path, "denied")), "--store", str(drv / "s"),
                                "--dask-address", address, "--no-gradcheck"],
                        env=stack.driver_env(MLFLOW_TRACKING_PASSWORD="wrong"), cwd=drv, timeout=600)
    assert run.returncode != 0 and "401" in run.stderr + run.stdout, run.stderr[-3000:]
    assert children(stack, "denied") == []


def test_a_scheduled_sweep_runs_on_a_worker_host(stack, tmp_path):
    api, auth = stack.exports["PREFECT_API_URL"], stack.exports["PREFECT_API_AUTH_STRING"]
    dep = stack.net.run("drv", [PY, "-m", "app", "deploy", str(spec(tmp_path, "scheduled-hosts")), "--cron",
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
        kids = children(stack, "scheduled-hosts")
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
