"""The multi-host stack of tests/cluster: each host a network namespace (``tests/cluster/netns.py``).

- ``svc``: ``sweepnet services up --backend postgres --host <its address>``: PostgreSQL (on the host's
  loopback) under MLflow (basic auth, proxied artifacts, a non-admin pipeline user) and Prefect (API auth
  string); auth is on because the address is not loopback.
- ``sched``: ``dask scheduler`` with TLS (certificates from ``app.services.credentials``, distributed by copy).
- ``w1``, ``w2``: one ``dask worker`` each with TLS; ``w1`` also runs a ``prefect worker`` for scheduled
  sweeps. They import sweepnet from a wheel installed into a folder of their own (no checkout on their
  ``sys.path``) and share nothing on disk with the driver.
- ``drv``: ``sweepnet sweep`` / ``sweepnet deploy`` from the checkout, with the exported credentials only.

Every process is stopped by PID, the namespaces are deleted and the state folders removed at the end
(``tests/cluster/fixtures.py`` holds the fixtures).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from app.services import credentials, procs
from tests.cluster.netns import TestNet

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
CLIENT_VARS = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS", "PYTHONPATH", "PREFECT_HOME",
               "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING")
POOL = "sweepnet-hosts"


def env(**extra: str) -> dict[str, str]:
    """This process's environment without any service pointer or Dask setting, plus ``extra``."""
    out = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS and not k.startswith("DASK_")}
    out.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    return out


def spec(folder: Path, name: str, base: dict = XOR, seeds: tuple = (1, 2), **extra) -> Path:
    """A 2-width XOR sweep file (``len(seeds)`` trials per width); ``extra`` goes into the spec as is."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": base, "seeds": list(seeds), "objective":
                                    {"metric": "train_MSE"}, "space": {"model.hidden": [[2], [3]]}, **extra}))
    return path


def build_installed(folder: Path) -> Path:
    """sweepnet built as a wheel and installed into a folder: what a worker host has instead of a checkout."""
    wheels = folder / "wheels"
    subprocess.run([PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300, capture_output=True, cwd=folder)
    target = folder / "site"
    subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    *map(str, wheels.glob("sweepnet-*.whl"))], check=True, timeout=300, capture_output=True)
    # compile the kernels once in the installed copy (Numba caches beside the sources), as an image build does
    subprocess.run([PY, "-c", "from pipeline.warmup import warm; warm()"], env=env(PYTHONPATH=str(target)),
                   cwd=folder, check=True, timeout=600, capture_output=True)
    return target


class Stack:
    """The processes, addresses and credentials of one multi-host stack."""

    def __init__(self, net: TestNet, root: Path, installed: Path):
        self.net, self.root, self.installed = net, root, installed
        self.records: list[procs.ProcRecord] = []
        self.exports: dict[str, str] = {}  # what `services up` printed for clients
        self.dask: dict[str, str] = {}  # the driver's Dask TLS client settings + address
        self.state = root / "svc" / "services"  # `sweepnet services up --state-dir` on the services host

    def spawn(self, host: str, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> procs.ProcRecord:
        cwd.mkdir(parents=True, exist_ok=True)
        rec = procs.spawn(self.root / "procs", name, host, [*self.net.exec_prefix(host), *cmd], env, cwd)
        self.records.append(rec)
        return rec

    def stop(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop the processes named ``name`` (SIGKILL by default: a crash, not a shutdown)."""
        for rec in [r for r in self.records if r.name == name]:
            procs.stop(rec, timeout=10, first_signal=sig)
            self.records.remove(rec)

    def driver_env(self, **extra: str) -> dict[str, str]:
        return env(**{"PYTHONPATH": str(ROOT), **self.exports, **self.dask, **extra})

    def on_driver(self, code: str, env: dict[str, str] | None = None, timeout: float = 120) -> object:
        """Run Python ``code`` (its last line of output is JSON) on the driver host."""
        out = self.net.run("drv", [PY, "-c", code], env=env or self.driver_env(), timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def http(self, url: str, *args: str) -> str:
        """HTTP status of a request from the driver host (curl)."""
        out = self.net.run("drv", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10", *args, url])
        return out.stdout.strip()


def services_up(stack: Stack, state: Path) -> dict[str, str]:
    """``sweepnet services up`` on the services host, auth on by default beyond loopback; the exports."""
    host = stack.net.address["svc"]
    cmd = [*stack.net.exec_prefix("svc"), PY, "-m", "app", "services", "up", "--only", "mlflow,prefect",
           "--backend", "postgres", "--host", host, "--state-dir", str(state), "--no-prefect-ui", "--timeout", "240"]
    out = subprocess.run(cmd, env=env(PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    exports = dict(shlex.split(line[len("export "):])[0].split("=", 1) for line in out.stdout.splitlines()
                   if line.startswith("export "))
    assert exports["MLFLOW_TRACKING_URI"].startswith(f"http://{host}:"), exports
    assert exports["MLFLOW_TRACKING_USERNAME"] != "admin" and "PREFECT_API_AUTH_STRING" in exports  # locked
    return exports


def copy_certs(tls: dict[str, str], dest: Path, role: str) -> dict[str, str]:
    """The CA and one role's certificate + key, copied to a host's own folder (as an operator distributes them)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("ca", role, f"{role}-key"):
        out[name] = str(shutil.copy(tls[name], dest / Path(tls[name]).name))
    return out


def tls_server_args(certs: dict[str, str]) -> list[str]:
    return ["--protocol", "tls", "--tls-ca-file", certs["ca"], "--tls-cert", certs["server"],
            "--tls-key", certs["server-key"]]


def start_dask(stack: Stack, **dask_config: str) -> None:
    """A TLS scheduler on ``sched`` and one TLS worker on each of ``w1``/``w2``; the driver's client settings.

    ``dask_config``: ``DASK_*`` settings for the scheduler and workers (e.g. a short worker TTL)."""
    sched_ip = stack.net.address["sched"]
    tls = credentials.dask_tls(stack.root / "sched" / "state", [sched_ip])
    address = f"tls://{sched_ip}:8786"
    site = {"PYTHONPATH": str(stack.installed)}
    certs = copy_certs(tls, stack.root / "sched" / "certs", "server")
    sched = stack.spawn("sched", "dask-scheduler", [PY, "-m", "distributed.cli.dask_scheduler", "--host", sched_ip,
                        "--port", "8786", "--no-dashboard", *tls_server_args(certs)], env(**site, **dask_config),
                        stack.root / "sched")
    workers = []
    for host in ("w1", "w2"):
        mine = copy_certs(tls, stack.root / host / "certs", "server")
        workers.append(stack.spawn(host, f"dask-worker-{host}", [
            PY, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
            "--host", stack.net.address[host], "--no-dashboard", "--name", host, *tls_server_args(mine),
            "--local-directory", str(stack.root / host / "dask")], env(**site, **stack.exports, **dask_config), stack.root / host))
    client = copy_certs(tls, stack.root / "drv" / "certs", "client")
    stack.dask = {**credentials.dask_tls_env(client), "SWEEPNET_DASK_ADDRESS": address}
    count = f"from distributed import Client; print(len(Client({address!r}, timeout=5).nthreads()))"
    procs.wait_until(lambda: stack.net.run("drv", [PY, "-c", count], env=stack.driver_env()).stdout.strip() == "2",
                     [sched, *workers], "two TLS workers on two hosts to register", 300, interval=2)


def start_prefect_worker(stack: Stack) -> None:
    """``prefect worker`` on ``w1`` with the installed package, polling a process pool for scheduled sweeps."""
    home = stack.root / "w1" / "prefect-worker"
    home.mkdir(parents=True, exist_ok=True)
    wenv = env(PYTHONPATH=str(stack.installed), HOME=str(home), PREFECT_HOME=str(home / "prefect"), **stack.exports)
    rec = stack.spawn("w1", "prefect-worker-w1", [str(Path(PY).with_name("prefect")), "worker", "start", "--pool",
                      POOL, "--type", "process", "--install-policy", "never", "--name", "w1"], wenv, home)
    api, auth = stack.exports["PREFECT_API_URL"], stack.exports["PREFECT_API_AUTH_STRING"]
    polling = [*stack.net.exec_prefix("drv"), "curl", "-s", "-m", "10", "-u", auth, "-H",
               "Content-Type: application/json", "-d", "{}", f"{api}/work_pools/{POOL}/workers/filter"]
    procs.wait_until(lambda: '"name":"w1"' in subprocess.run(polling, capture_output=True, text=True,
                                                             timeout=30).stdout.replace(" ", ""),
                     [rec], "the prefect worker on w1 to poll its pool", 240, interval=2)


def children(stack: Stack, experiment: str) -> list:
    return stack.on_driver(
        "import json, mlflow\n"
        "c = mlflow.MlflowClient()\n"
        f"exp = c.get_experiment_by_name({experiment!r})\n"
        "runs = c.search_runs([exp.experiment_id], filter_string=\"tags.`sweepnet.kind` = 'trial'\") if exp else []\n"
        "print(json.dumps([[r.data.tags['sweepnet.trial_key'], r.info.status,\n"
        "                   [a.path for a in c.list_artifacts(r.info.run_id)]] for r in runs]))\n")


def census(stack: Stack, experiment: str) -> dict:
    """``tests.reliability.helpers.census`` of sweep ``experiment``, taken on the driver host (the only host
    that reaches the services with the pipeline's credentials): the counts and the trial keys."""
    return stack.on_driver(
        "import json, os\n"
        "from tests.reliability.helpers import census, sweep_ctx\n"
        f"seen = census(sweep_ctx(os.environ['MLFLOW_TRACKING_URI'], {experiment!r}))\n"
        "print(json.dumps({k: v for k, v in seen.items() if k not in ('by_key', 'finished_ids')}))\n")
