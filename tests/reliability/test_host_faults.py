"""Faults across hosts, on the five-host stack of ``tests/cluster/stack.py`` (network namespaces; Postgres-backed
MLflow with auth, Prefect with auth, a TLS Dask scheduler and two TLS workers with the package installed, the
driver with the exported credentials only): the Postgres under MLflow and Prefect restarted mid-sweep, the Dask
scheduler killed mid-sweep, a worker host cut off the network mid-sweep. The disturbed sweep is the fault
tests' 8-trial XOR spec (~1-2 s per trial, one trial per chunk); afterwards every trial key has exactly one
FINISHED child and no child is left RUNNING. The tests share one stack, in this order (the cut is last: the
host does not come back)."""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.stack import PY, ROOT, census, env, spec, start_dask
from tests.reliability import helpers as h

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(2400)]
# the scheduler forgets a worker that stopped answering after 15 s (Dask's default TTL is 5 minutes)
DASK_CONFIG = {"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "15s"}


def _sweep(stack, tmp_path, name: str, label: str) -> h.Proc:
    """``sweepnet sweep`` of the fault spec on the driver host, in a killable process group."""
    path = spec(tmp_path, name, base=h.XOR, seeds=(1, 2, 3, 4), chunk_size=1)
    cmd = [*stack.net.exec_prefix("drv"), PY, "-m", "app", "sweep", str(path), "--store", str(tmp_path / "store"),
           "--dask-address", stack.dask["SWEEPNET_DASK_ADDRESS"]]
    return h.Proc(cmd, stack.driver_env(), tmp_path / "logs", label)


def _wait_finished(stack, name: str, proc: h.Proc, at_least: int, timeout: float = 600) -> dict:
    """Poll the census from the driver until ``at_least`` trials finished (the sweep must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the sweep ended before the fault: {proc.stderr[-3000:]}"
        try:
            seen = census(stack, name)
        except AssertionError:  # the experiment or its parent run does not exist yet
            seen = {"finished_once": 0}
        if seen["finished_once"] >= at_least:
            return seen
        time.sleep(2)
    raise AssertionError(f"fewer than {at_least} trials finished in {timeout} s: {proc.stderr[-3000:]}")


def _assert_each_trial_once(stack, name: str) -> dict:
    seen = census(stack, name)
    assert len(seen["keys"]) == h.N_FAULT_TRIALS and seen["finished_once"] == h.N_FAULT_TRIALS, seen
    assert seen["duplicates"] == 0 and seen["orphans"] == 0, seen
    return seen


def test_postgres_restarted_mid_sweep_loses_nothing(stack, tmp_path, request):
    """PostgreSQL (MLflow's backend store and Prefect's database) is restarted (fast shutdown, same port) while
    trials run on the worker hosts: MLflow and Prefect clients retry, the sweep finishes, each trial once."""
    run = _sweep(stack, tmp_path, "pg-restart", "run")
    before = _wait_finished(stack, "pg-restart", run, at_least=2)["finished_once"]
    restart = ("import json, time\nfrom pathlib import Path\n"
               "from app.services import procs, start_postgres, stop_services\n"
               f"state = Path({str(stack.state)!r})\n"
               "port = procs.read_state(state)['services']['postgres']['port']\n"
               "t0 = time.monotonic(); stop_services(state, only=['postgres'])\n"
               "down = time.monotonic(); start_postgres(state, port=port, timeout=120)\n"
               "print(json.dumps({'stop_s': down - t0, 'down_s': time.monotonic() - t0}))\n")
    out = stack.net.run("svc", [PY, "-c", restart], env=env(PYTHONPATH=str(ROOT)), cwd=ROOT, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    restarted_at = time.monotonic()
    code = run.wait(900)
    assert code == 0, run.stderr[-4000:]
    seen = _assert_each_trial_once(stack, "pg-restart")
    h.record(request.node.name, injected=f"fast shutdown + start of PostgreSQL on the services host after {before} "
             "finished trials (same port, same data)", trials=h.N_FAULT_TRIALS, exit_code=code,
             postgres_down_s=round(json.loads(out.stdout.strip().splitlines()[-1])["down_s"], 1),
             end_after_restart_s=round(time.monotonic() - restarted_at, 1), finished_once=seen["finished_once"],
             duplicates=seen["duplicates"], orphans=seen["orphans"])


def test_scheduler_killed_mid_sweep_fails_clearly_then_rerun_runs_each_trial_once(stack, tmp_path, request):
    """SIGKILL to the Dask scheduler on its host mid-sweep: the driver fails within a bounded time with an error
    that names the scheduler; with a new scheduler and workers the same command finishes every trial once."""
    run = _sweep(stack, tmp_path, "sched-kill", "run")
    before = _wait_finished(stack, "sched-kill", run, at_least=2)["finished_once"]
    stack.stop("dask-scheduler")
    killed_at = time.monotonic()
    code = run.wait(600)
    fail_s = time.monotonic() - killed_at
    message = (run.stderr.strip().splitlines() or [""])[-1]
    assert code != 0, run.stdout[-2000:]
    assert stack.dask["SWEEPNET_DASK_ADDRESS"] in run.stderr or "scheduler" in run.stderr.lower(), run.stderr[-3000:]
    for host in ("w1", "w2"):
        stack.stop(f"dask-worker-{host}")
    start_dask(stack, **DASK_CONFIG)
    rerun = _sweep(stack, tmp_path, "sched-kill", "rerun")
    assert rerun.wait(900) == 0, rerun.stderr[-4000:]
    seen = _assert_each_trial_once(stack, "sched-kill")
    h.record(request.node.name, injected=f"SIGKILL to the Dask scheduler (its own host) after {before} finished "
             "trials; new scheduler + workers; same command rerun", trials=h.N_FAULT_TRIALS, exit_code=code,
             fail_s=round(fail_s, 1), message=message[:300], rerun_s=round(rerun.elapsed, 1),
             finished_once=seen["finished_once"], duplicates=seen["duplicates"], orphans=seen["orphans"],
             killed_marked=seen["killed"])


def test_worker_host_cut_off_mid_sweep_its_trials_finish_elsewhere_once(stack, tmp_path, request):
    """Worker host w2 loses its network link mid-sweep (its processes keep running, unreachable): the scheduler
    drops it after its TTL, its chunks run again on w1 and the sweep finishes with every trial once."""
    run = _sweep(stack, tmp_path, "host-cut", "run")
    before = _wait_finished(stack, "host-cut", run, at_least=2)["finished_once"]
    stack.net.cut("w2")
    cut_at = time.monotonic()
    code = run.wait(900)
    assert code == 0, run.stderr[-4000:]
    seen = _assert_each_trial_once(stack, "host-cut")
    h.record(request.node.name, injected=f"link of worker host w2 down after {before} finished trials (worker TTL "
             "15 s)", trials=h.N_FAULT_TRIALS, exit_code=code, end_after_cut_s=round(time.monotonic() - cut_at, 1),
             finished_once=seen["finished_once"], duplicates=seen["duplicates"], orphans=seen["orphans"],
             killed_marked=seen["killed"])
