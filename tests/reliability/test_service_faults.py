"""The tracking and orchestration servers failing: MLflow down at start, MLflow or Prefect going away
mid-sweep (SIGKILL to the server's process group), then the same command rerun once the server is back."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from app.services import free_port
from tests.reliability import helpers as h

pytestmark = [pytest.mark.reliability, pytest.mark.services]

# MLflow's HTTP client retries 7 times with exponential backoff (measured: 252 s before a refused
# connection surfaces). Tests that expect a failure bound it; the defaults are measured separately.
FAST_FAIL = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
SMALL = {**h.FAULT_SPEC, "name": "down-at-start", "seeds": [1, 2],
         "base": {**h.XOR, "model": {**h.XOR["model"], "epochs": 3000}}}


def _kill_group(state: Path, name: str) -> None:
    """SIGKILL a service started by ``app.services`` (its own process group) in ``state``."""
    pid = int((state / "pids" / f"{name}.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)


def _down_at_start(tmp_path, rel_prefect, rel_dask, extra_env: dict, timeout: float):
    spec = h.write_spec(tmp_path, SMALL)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = h.clean_env(PREFECT_API_URL=rel_prefect, MLFLOW_TRACKING_URI=uri, **extra_env)
    proc = h.cli_sweep(spec, tmp_path / "store", env, "--dask-address", rel_dask, "--no-gradcheck",
                       label="mlflow-down")
    return uri, proc, proc.wait(timeout=timeout)


@pytest.mark.timeout(200)
def test_mlflow_down_at_start_fails_before_any_trial(tmp_path, rel_prefect, rel_dask, request):
    """MLFLOW_TRACKING_URI points at a closed port: exit 1 with a message naming the URI, and no trial
    starts (no progress line). MLflow's client retries are set to 1 here."""
    uri, proc, code = _down_at_start(tmp_path, rel_prefect, rel_dask, FAST_FAIL, 180)
    assert code == 1, proc.stderr[-3000:]
    failed = h.failure_line(proc.stderr)
    assert uri in failed, proc.stderr[-3000:]
    assert "/2 done" not in proc.stderr, "trials ran although the tracking server was down"
    h.record(request.node.name, injected=f"MLFLOW_TRACKING_URI={uri} (closed port), "
             "MLFLOW_HTTP_REQUEST_MAX_RETRIES=1", trials_started=0, exit_code=code,
             fail_s=round(proc.elapsed, 1), message=failed[:300])


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_mlflow_down_at_start_fails_fast_with_default_client_settings(tmp_path, rel_prefect, rel_dask):
    """With MLflow's default client settings the error should still arrive within a minute."""
    _down_at_start(tmp_path, rel_prefect, rel_dask, {}, 60)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mlflow_goes_away_mid_sweep_then_rerun_resumes(tmp_path, rel_prefect, own_dask, reference, request):
    """SIGKILL the MLflow server after 2 finished trials: the sweep fails (naming the server) or finishes;
    with the server back on the same store, the rerun completes every trial once, bit for bit."""
    from app.services import start_mlflow, stop_services

    state = tmp_path / "mlflow"
    port = free_port()
    uri = start_mlflow(state, port=port, timeout=240)["tracking_uri"]
    try:
        address, _ = own_dask(2, **FAST_FAIL)
        spec = h.write_spec(tmp_path, h.FAULT_SPEC)
        store = tmp_path / "store"
        env = h.clean_env(PREFECT_API_URL=rel_prefect, MLFLOW_TRACKING_URI=uri, **FAST_FAIL)
        proc = h.cli_sweep(spec, store, env, "--dask-address", address, "--no-gradcheck", label="mlflow-away")
        db = state / "mlflow" / "mlflow.db"
        h.wait_for(lambda: h.sqlite_finished(db) >= 2, proc, 300, "2 finished trials")
        _kill_group(state, "mlflow-server")
        t_kill = time.monotonic()
        code = proc.wait(timeout=600)
        end_s = time.monotonic() - t_kill
        failed = h.failure_line(proc.stderr)
        assert code == 0 or (code == 1 and uri in failed), proc.stderr[-3000:]
        stop_services(state, only=["mlflow"])
        t_back = time.monotonic()
        start_mlflow(state, port=port, timeout=240)
        back_s = time.monotonic() - t_back
        before = h.census(h.sweep_ctx(uri, h.FAULT_SPEC["name"]))
        rerun = h.cli_sweep(spec, store, env, "--dask-address", address, "--no-gradcheck", label="rerun")
        assert rerun.wait(timeout=400) == 0, rerun.stderr[-3000:]
        seen = _check_http(uri, reference, tmp_path)
        assert before["finished_ids"] <= seen["finished_ids"], "a logged trial was lost or replaced"
        ran_again = len(seen["finished_ids"] - before["finished_ids"])
        diffs = h.summary_diffs(h.leaderboard(store), reference["leaderboard"])
        h.record(request.node.name, injected="SIGKILL to the mlflow server after 2 finished trials; restarted "
                 "on the same port and store after the sweep ended; same command rerun", trials=h.N_FAULT_TRIALS,
                 exit_code=code, end_after_kill_s=round(end_s, 1), message=failed[:300] or "(none)",
                 finished_before_rerun=len(before["finished_ids"]), stale_running_before_rerun=before["orphans"],
                 rerun_ran=ran_again, finished_once=seen["finished_once"], duplicates=seen["duplicates"],
                 orphans=seen["orphans"], killed_marked=seen["killed"], server_restart_s=round(back_s, 1),
                 rerun_s=round(rerun.elapsed, 1), bit_identical=True, summary_equal=not diffs,
                 summary_diffs=diffs[:3])
    finally:
        stop_services(state)


def _check_http(uri: str, reference: dict, tmp_path: Path) -> dict:
    ctx = h.sweep_ctx(uri, h.FAULT_SPEC["name"])
    seen = h.census(ctx)
    assert seen["keys"] == reference["keys"]
    assert seen["finished_once"] == h.N_FAULT_TRIALS and seen["duplicates"] == 0 and seen["orphans"] == 0
    got = h.digests(ctx, tmp_path / "dl")
    assert {k: got.get(k) for k in reference["keys"]} == reference["digests"], "results differ from the reference"
    return seen


@pytest.fixture(scope="module")
def prefect_loss(tmp_path_factory, reference):
    """Run the sweep against a private Prefect server, SIGKILL the server after 2 finished trials, wait for
    the sweep to end, bring the server back on the same port and state, rerun the same command."""
    from app.services import start_prefect, stop_services

    folder = tmp_path_factory.mktemp("prefect-loss")
    state = folder / "prefect"
    port = free_port()
    api = start_prefect(state, port=port, worker=False, ui=False, timeout=240)["api_url"]
    try:
        spec = h.write_spec(folder, h.FAULT_SPEC)
        store = folder / "store"
        env = h.clean_env(PREFECT_API_URL=api)
        proc = h.cli_sweep(spec, store, env, "--workers", "2", "--no-gradcheck", label="prefect-away")
        h.wait_for(lambda: h.sqlite_finished(store / "mlflow.db") >= 2, proc, 300, "2 finished trials")
        _kill_group(state, "prefect-server")
        t_kill = time.monotonic()
        code = proc.wait(timeout=600)
        out = {"api": api, "code": code, "stderr": proc.stderr, "end_s": time.monotonic() - t_kill,
               "folder": folder, "store": store}
        ctx = h.sweep_ctx(h.sqlite_uri(store), h.FAULT_SPEC["name"])
        out["before"] = h.census(ctx)
        stop_services(state, only=["prefect"])
        start_prefect(state, port=port, worker=False, ui=False, timeout=240)
        rerun = h.cli_sweep(spec, store, env, "--workers", "2", "--no-gradcheck", label="rerun")
        out["rerun_code"], out["rerun_s"], out["rerun_err"] = rerun.wait(timeout=400), rerun.elapsed, rerun.stderr
        yield out
    finally:
        stop_services(state)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_prefect_goes_away_mid_sweep_fails_then_rerun_resumes(prefect_loss, reference, request):
    """Prefect server SIGKILLed mid-sweep: the command exits non-zero (it cannot record the flow's end);
    the rerun with the server back completes, with one FINISHED child per trial and the reference results."""
    p = prefect_loss
    assert p["code"] != 0, "the sweep reported success without its Prefect server"
    assert p["rerun_code"] == 0, p["rerun_err"][-3000:]
    store = p["store"]
    ctx = h.sweep_ctx(h.sqlite_uri(store), h.FAULT_SPEC["name"])
    seen = h.census(ctx)
    assert seen["keys"] == reference["keys"] and seen["finished_once"] == h.N_FAULT_TRIALS
    assert seen["duplicates"] == 0 and seen["orphans"] == 0
    assert p["before"]["finished_ids"] <= seen["finished_ids"]
    got = h.digests(ctx, p["folder"] / "dl")
    assert {k: got.get(k) for k in reference["keys"]} == reference["digests"]
    diffs = h.summary_diffs(h.leaderboard(store), reference["leaderboard"])
    failed = h.failure_line(p["stderr"])
    h.record(request.node.name, injected="SIGKILL to the prefect server after 2 finished trials; restarted on "
             "the same port and database after the sweep ended; same command rerun", trials=h.N_FAULT_TRIALS,
             exit_code=p["code"], end_after_kill_s=round(p["end_s"], 1), message=failed[:300] or "(none)",
             finished_before_rerun=len(p["before"]["finished_ids"]),
             rerun_ran=len(seen["finished_ids"] - p["before"]["finished_ids"]), finished_once=seen["finished_once"],
             duplicates=seen["duplicates"], orphans=seen["orphans"], rerun_s=round(p["rerun_s"], 1),
             bit_identical=True, summary_equal=not diffs, summary_diffs=diffs[:3])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_prefect_loss_message_names_the_server(prefect_loss):
    """The failure line names the Prefect API that went away."""
    failed = h.failure_line(prefect_loss["stderr"])
    assert failed and prefect_loss["api"].rsplit("/api", 1)[0] in failed
