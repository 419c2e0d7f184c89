"""Two runs of the same sweep at once (overlapping cron firings, two terminals): the second is refused with
who holds the sweep since when, or waits; a lease whose holder died is taken over. Real processes: the holder
is a subprocess (killed by its PID), the contender this test process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline import tracking
from pipeline.sweep import collect, driver, lease, runner

ROOT = Path(__file__).resolve().parents[2]
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 50, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
SPEC = {"name": "leased", "base": XOR, "seeds": [1, 2], "chunk_size": 2, "objective": {"metric": "train_MSE"},
        "space": {"model.hidden": [[2], [3]]}}

HOLDER = textwrap.dedent("""
    import sys, time, json
    from pipeline import tracking
    from pipeline.sweep import driver
    plan = driver.prepare(json.loads(sys.argv[1]), sys.argv[2], check_gradient=False)
    # a trial in progress: a RUNNING child of the parent, as a worker leaves it while it trains
    c = tracking.client(plan.ctx.tracking_uri)
    run = c.create_run(plan.ctx.experiment_id, tags={tracking.PARENT: plan.ctx.parent_run_id,
                                                     tracking.TAG_KIND: "trial"})
    print("READY", run.info.run_id, flush=True)
    time.sleep(float(sys.argv[3]))
""")


def start_holder(store: Path, seconds: float) -> tuple[subprocess.Popen, str]:
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(SPEC), str(store), str(seconds)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        pytest.fail(f"holder did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, line.split()[1]


def test_a_second_run_is_refused_while_the_first_lives_and_takes_over_when_it_died(tmp_path):
    store = tmp_path / "store"
    holder, child = start_holder(store, 600)
    try:
        with pytest.raises(driver.SweepBusy) as info:
            driver.prepare(SPEC, store, check_gradient=False)
        message = str(info.value)
        assert f"{socket.gethostname()} pid {holder.pid}" in message and "since 20" in message
        assert "--wait SECONDS" in message
        ctx = tracking.TrackingContext(tracking.default_tracking_uri(store), *_ids(store))
        # the refused run touched nothing: the live child and the parent are still RUNNING
        assert tracking.run_status(ctx, child) == "RUNNING" == tracking.run_status(ctx, ctx.parent_run_id)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the holder dies without releasing (kill -9, a crash)
        holder.wait(30)
    plan = driver.prepare(SPEC, store, check_gradient=False)  # stale lease: taken over
    assert plan.lease_note.startswith(f"took over the lease of {socket.gethostname()} pid {holder.pid}")
    assert tracking.run_status(plan.ctx, child) == "KILLED"  # now it really is stale
    col = collect.Collector(plan, driver.pending_chunks(plan), every=0)
    for c in driver.pending_chunks(plan):
        col.add(runner.run_chunk(c, plan.ctx, plan.options))
    assert collect.finish(plan, col.rows())["trials_finished"] == 4
    assert (store / "leases" / f"{plan.sweep_key}.lease").read_text() == ""  # released by finish


def _ids(store: Path) -> tuple[str, str]:
    c = tracking.client(tracking.default_tracking_uri(store))
    exp = c.get_experiment_by_name("leased")
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")[0]
    return exp.experiment_id, parent.info.run_id


def test_a_second_holder_waits_for_the_lease_when_asked(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from pipeline.sweep import lease
        held = lease.acquire(sys.argv[1], "k", "s")
        print("READY", flush=True)
        time.sleep(2)
        lease.release(held)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        with pytest.raises(lease.LeaseHeld, match=f"pid {proc.pid} holds"):
            lease.acquire(tmp_path, "k", "s")
        start = time.monotonic()
        held = lease.acquire(tmp_path, "k", "s", wait=60)
        assert time.monotonic() - start < 30 and held.previous is None  # a clean release leaves no stale holder
        assert held.holder["pid"] == os.getpid()
        lease.release(held)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def test_the_lease_is_reentrant_within_one_process(tmp_path):
    first = lease.acquire(tmp_path, "k", "s")
    assert lease.acquire(tmp_path, "k", "s") is first  # an earlier plan of this process was abandoned
    lease.release(first)
    lease.release(first)  # twice is harmless
