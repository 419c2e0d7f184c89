"""Dask workers killed with SIGKILL mid-sweep (once, repeatedly, all of them), and the flow process itself
killed mid-sweep. Every disturbed run is compared with the undisturbed reference run of the same spec:
same trial keys, one FINISHED child per key, no RUNNING orphan, the same metrics and weights bit for bit.
The summary tables are compared too and the differences recorded; the two known causes are pinned by
deterministic strict xfails in test_summary_faults.py."""

from __future__ import annotations

import time

import pytest

from tests.reliability import helpers as h

pytestmark = [pytest.mark.reliability, pytest.mark.services]


def _check_against_reference(store, reference, tmp_path) -> dict:
    ctx = h.sweep_ctx(h.sqlite_uri(store), h.FAULT_SPEC["name"])
    seen = h.census(ctx)
    assert seen["keys"] == reference["keys"], "the disturbed run has other trials than the reference"
    assert seen["finished_once"] == h.N_FAULT_TRIALS, f"{seen['finished_once']} trials with one FINISHED child"
    assert seen["duplicates"] == 0 and seen["orphans"] == 0
    got = h.digests(ctx, tmp_path / "dl")
    differ = sorted(k for k in reference["keys"] if got.get(k) != reference["digests"][k])
    assert not differ, f"trials {differ} differ from the undisturbed run"
    # the summary is compared and recorded; its known differences are pinned by strict xfails in
    # test_summary_faults.py (deterministic reproductions without the kill races)
    seen["summary_diffs"] = h.summary_diffs(h.leaderboard(store), reference["leaderboard"])
    return seen


def _rerun_on_a_new_cluster(spec, store, env, state, own_dask, reference, tmp_path) -> tuple:
    """After a failed sweep: its census, then the same command on a new 2-worker cluster, checked against the
    undisturbed run; (census before, census after, trials the rerun ran, the rerun)."""
    from app.services import stop_services

    before = h.census(h.sweep_ctx(h.sqlite_uri(store), h.FAULT_SPEC["name"]))
    stop_services(state)
    address2, _ = own_dask(2)
    rerun = h.cli_sweep(spec, store, env, "--dask-address", address2, "--no-gradcheck", label="rerun")
    assert rerun.wait(timeout=300) == 0, rerun.stderr[-3000:]
    seen = _check_against_reference(store, reference, tmp_path)
    assert before["finished_ids"] <= seen["finished_ids"], "a trial finished before the failure ran again"
    return before, seen, len(seen["finished_ids"] - before["finished_ids"]), rerun


def _kill_one_worker(state, victim_index: int) -> int:
    procs = h.worker_processes(state)
    victim = procs[victim_index % len(procs)]
    victim.kill()  # SIGKILL; its nanny starts a new worker process
    return victim.pid


def _sweep_killing_workers(tmp_path, rel_prefect, own_dask, n_kills: int) -> tuple:
    address, state = own_dask(2)
    spec = h.write_spec(tmp_path, h.FAULT_SPEC)
    store = tmp_path / "store"
    proc = h.cli_sweep(spec, store, h.clean_env(PREFECT_API_URL=rel_prefect), "--dask-address", address,
                       "--no-gradcheck", label="killed-workers")
    kills, recovered = [], []
    db = store / "mlflow.db"
    for i in range(n_kills):
        target = 1 + 2 * i
        h.wait_for(lambda: h.sqlite_finished(db) >= target or proc.poll() is not None, proc, 240,
                   f"{target} finished trials")
        if proc.poll() is not None or h.sqlite_finished(db) >= h.N_FAULT_TRIALS - 1:
            break
        h.wait_for(lambda: len(h.worker_processes(state)) == 2, proc, 60, "two live workers")
        before, t_kill = h.sqlite_finished(db), time.monotonic()
        kills.append(_kill_one_worker(state, i))
        # recovery: the next trial that finishes after the kill
        h.wait_for(lambda: h.sqlite_finished(db) > before or proc.poll() is not None, proc, 240, "progress")
        recovered.append(round(time.monotonic() - t_kill, 1))
    code = proc.wait(timeout=400)
    return proc, code, store, kills, recovered


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_worker_killed_once_mid_sweep(tmp_path, rel_prefect, own_dask, reference, request):
    """kill -9 one of two Dask workers after the first trial finished; the sweep completes with every
    trial finished exactly once and the undisturbed run's results bit for bit."""
    proc, code, store, kills, recovered = _sweep_killing_workers(tmp_path, rel_prefect, own_dask, 1)
    assert code == 0, proc.stderr[-3000:]
    assert len(kills) == 1, "the sweep ended before a worker could be killed"
    seen = _check_against_reference(store, reference, tmp_path)
    h.record(request.node.name, injected="SIGKILL to 1 of 2 Dask workers after the 1st finished trial",
             trials=h.N_FAULT_TRIALS, finished_once=seen["finished_once"], duplicates=seen["duplicates"],
             orphans=seen["orphans"], deleted_duplicates=seen["deleted"], kills=len(kills),
             recover_s=recovered, sweep_s=round(proc.elapsed, 1), undisturbed_s=round(reference["seconds"], 1),
             bit_identical=True, summary_equal=not seen["summary_diffs"],
             summary_diffs=seen["summary_diffs"][:3])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_workers_killed_repeatedly_mid_sweep(tmp_path, rel_prefect, own_dask, reference, request):
    """kill -9 a worker three times (alternating workers, every second finished trial); same guarantees."""
    proc, code, store, kills, recovered = _sweep_killing_workers(tmp_path, rel_prefect, own_dask, 3)
    assert code == 0, proc.stderr[-3000:]
    assert len(kills) >= 2, f"only {len(kills)} kills landed before the sweep ended"
    seen = _check_against_reference(store, reference, tmp_path)
    h.record(request.node.name, injected=f"SIGKILL to a Dask worker {len(kills)} times (after trials 1, 3, 5)",
             trials=h.N_FAULT_TRIALS, finished_once=seen["finished_once"], duplicates=seen["duplicates"],
             orphans=seen["orphans"], deleted_duplicates=seen["deleted"], kills=len(kills),
             recover_s=recovered, sweep_s=round(proc.elapsed, 1), undisturbed_s=round(reference["seconds"], 1),
             bit_identical=True, summary_equal=not seen["summary_diffs"],
             summary_diffs=seen["summary_diffs"][:3])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_worker_dies_then_rerun_completes(tmp_path, rel_prefect, own_dask, reference, request):
    """Both workers and their nannies killed: the sweep fails within --worker-timeout (+ polling) with a
    message that says what happened and to rerun; the rerun on a new cluster completes the missing trials."""
    worker_timeout = 10
    address, state = own_dask(2)
    spec = h.write_spec(tmp_path, h.FAULT_SPEC)
    store = tmp_path / "store"
    env = h.clean_env(PREFECT_API_URL=rel_prefect)
    proc = h.cli_sweep(spec, store, env, "--dask-address", address, "--no-gradcheck",
                       "--worker-timeout", str(worker_timeout), label="all-die")
    db = store / "mlflow.db"
    h.wait_for(lambda: h.sqlite_finished(db) >= 2, proc, 240, "2 finished trials")
    for p in h.worker_processes(state) + h.nannies(state):
        p.kill()
    t_kill = time.monotonic()
    code = proc.wait(timeout=worker_timeout + 120)
    fail_s = time.monotonic() - t_kill
    assert code == 1, proc.stderr[-3000:]
    assert "every Dask worker" in proc.stderr and "rerun the same command" in proc.stderr
    assert fail_s < worker_timeout + 60
    before, seen, ran_again, rerun = _rerun_on_a_new_cluster(spec, store, env, state, own_dask, reference, tmp_path)
    assert ran_again == h.N_FAULT_TRIALS - len(before["finished_ids"])
    message = h.failure_line(proc.stderr)
    h.record(request.node.name, injected="SIGKILL to both Dask workers and their nannies after 2 finished "
             f"trials; --worker-timeout {worker_timeout}", trials=h.N_FAULT_TRIALS,
             finished_before_failure=len(before["finished_ids"]), rerun_ran=ran_again,
             finished_once=seen["finished_once"], duplicates=seen["duplicates"], orphans=seen["orphans"],
             killed_marked=seen["killed"], fail_after_kill_s=round(fail_s, 1), exit_code=code, message=message[:300],
             rerun_s=round(rerun.elapsed, 1), bit_identical=True, summary_equal=not seen["summary_diffs"],
             summary_diffs=seen["summary_diffs"][:3])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_flow_killed_then_rerun_runs_only_missing_trials(tmp_path, rel_prefect, reference, request):
    """SIGKILL the whole `sweepnet sweep` process group (CLI, flow, its LocalCluster) after 3 finished trials;
    the same command again runs only the missing trials, each finished once with the undisturbed run's
    metrics and weights (the summary table is compared and recorded)."""
    spec = h.write_spec(tmp_path, h.FAULT_SPEC)
    store = tmp_path / "store"
    env = h.clean_env(PREFECT_API_URL=rel_prefect)
    first = h.cli_sweep(spec, store, env, "--workers", "2", "--no-gradcheck", label="first")
    db = store / "mlflow.db"
    h.wait_for(lambda: h.sqlite_finished(db) >= 3, first, 300, "3 finished trials")
    first.kill()
    ctx = h.sweep_ctx(h.sqlite_uri(store), h.FAULT_SPEC["name"])
    before = h.census(ctx)
    assert 3 <= len(before["finished_ids"]) < h.N_FAULT_TRIALS
    rerun = h.cli_sweep(spec, store, env, "--workers", "2", "--no-gradcheck", label="rerun")
    assert rerun.wait(timeout=400) == 0, rerun.stderr[-3000:]
    seen = _check_against_reference(store, reference, tmp_path)
    assert before["finished_ids"] <= seen["finished_ids"]
    ran_again = len(seen["finished_ids"] - before["finished_ids"])
    assert ran_again == h.N_FAULT_TRIALS - len(before["finished_ids"]), "the rerun ran finished trials again"
    h.record(request.node.name, injected="SIGKILL to the sweepnet process group (CLI, flow, LocalCluster) after "
             "3 finished trials; same command rerun", trials=h.N_FAULT_TRIALS,
             finished_before_kill=len(before["finished_ids"]), orphans_left_by_kill=before["orphans"],
             rerun_ran=ran_again, finished_once=seen["finished_once"], duplicates=seen["duplicates"],
             orphans=seen["orphans"], killed_marked=seen["killed"], rerun_s=round(rerun.elapsed, 1),
             bit_identical=True, summary_equal=not seen["summary_diffs"],
             summary_diffs=seen["summary_diffs"][:3])


@pytest.mark.timeout(600)
def test_scheduler_killed_mid_sweep_fails_clearly_then_rerun_completes(tmp_path, rel_prefect, own_dask, reference,
                                                                       request):
    """kill -9 the Dask scheduler after 2 finished trials: the sweep fails at once with a message that names the
    scheduler and says to rerun (not a summary that counts the cut-off trials as failed); the rerun on a new
    cluster runs only the missing trials."""
    address, state = own_dask(2)
    spec = h.write_spec(tmp_path, h.FAULT_SPEC)
    store = tmp_path / "store"
    env = h.clean_env(PREFECT_API_URL=rel_prefect)
    proc = h.cli_sweep(spec, store, env, "--dask-address", address, "--no-gradcheck", label="scheduler-dies")
    db = store / "mlflow.db"
    h.wait_for(lambda: h.sqlite_finished(db) >= 2, proc, 240, "2 finished trials")
    from app.services import procs

    sched = [procs.record_from(r) for r in procs.read_state(state)["processes"].values()
             if r["name"] == "dask-scheduler"]
    procs.stop(sched[0], first_signal=9)
    t_kill = time.monotonic()
    code = proc.wait(timeout=180)
    fail_s = time.monotonic() - t_kill
    message = h.failure_line(proc.stderr)
    assert code == 1, proc.stdout[-3000:]
    assert f"the Dask scheduler at {address}" in message and "rerun the same command" in message, message
    before, seen, ran_again, rerun = _rerun_on_a_new_cluster(spec, store, env, state, own_dask, reference, tmp_path)
    h.record(request.node.name, injected="SIGKILL to the Dask scheduler after 2 finished trials; new cluster; "
             "same command rerun", trials=h.N_FAULT_TRIALS, finished_before_failure=len(before["finished_ids"]),
             rerun_ran=ran_again, finished_once=seen["finished_once"], duplicates=seen["duplicates"],
             orphans=seen["orphans"], killed_marked=seen["killed"], fail_after_kill_s=round(fail_s, 1),
             exit_code=code, message=message[:300], rerun_s=round(rerun.elapsed, 1), bit_identical=True,
             summary_equal=not seen["summary_diffs"], summary_diffs=seen["summary_diffs"][:3])
