"""The sweep flow end to end with real processes: the CLI on embedded defaults (its own Prefect server,
a LocalCluster, MLflow on sqlite), real separate services, a killed worker, every worker gone, and a
scheduled deployment. No mocks; the trial function is the real ``pipeline.train.run_training``."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from pipeline import tracking
from tests.prefect_rest import prefect_api
from tests.reliability.helpers import sqlite_finished
from tests.services import (  # noqa: F401  (session fixtures of real local services)
    local_services, prefect_server_url, sweepnet_service_pool)

ROOT = Path(__file__).resolve().parents[2]
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 300, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}


def write_spec(folder: Path, name: str, **over) -> Path:
    raw = {"name": name, "base": XOR, "seeds": [1, 2], "objective": {"metric": "train_MSE"},
           "space": {"model.hidden": [[2], [3]], "model.rate": [0.05, 1.0e6]}}  # rate 1e6 diverges
    raw.update(over)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def env_without_services(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def sqlite_ctx(store: Path, name: str) -> tracking.TrackingContext:
    c = tracking.client(f"sqlite:///{store / 'mlflow.db'}")
    exp = c.get_experiment_by_name(name)
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")[0]
    return tracking.TrackingContext(c._tracking_client.tracking_uri, exp.experiment_id, parent.info.run_id)


def statuses(ctx) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in tracking.children(ctx):
        out.setdefault(r.data.tags[tracking.TAG_KEY], []).append(r.info.status)
    return out


def test_cli_sweep_on_embedded_defaults(tmp_path):
    spec = write_spec(tmp_path, "embedded")
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store),
                           "--workers", "2"], cwd=tmp_path, env=env_without_services(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 3, proc.stderr[-3000:]  # completed, with the diverging trials counted
    assert "8 trials: 4 finished, 4 failed" in proc.stdout
    assert "sweepnet ui --store" in proc.stdout
    assert "/8 done" in proc.stderr  # live progress line
    ctx = sqlite_ctx(store, "embedded")
    by_key = statuses(ctx)
    assert len(by_key) == 8
    assert sorted(s for v in by_key.values() for s in v) == ["FAILED"] * 4 + ["FINISHED"] * 4
    c = tracking.client(ctx.tracking_uri)
    parent = c.get_run(ctx.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 4
    assert {"leaderboard.csv", "leaderboard.md", "census.csv", "census.png"} <= {
        a.path for a in c.list_artifacts(ctx.parent_run_id)}
    # no second Prefect server was left behind: the CLI stops the one it started, by PID
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(store) in " ".join(p.info["cmdline"] or []) and "prefect" in " ".join(p.info["cmdline"] or [])]


def test_cli_sweep_where_every_trial_fails_finishes_the_parent_and_exits_3(tmp_path):
    # issue 13: every trial diverges; the summary used to crash ("sweep refused: Data cannot be log-scaled")
    base = {"name": "xor", "data": {"source": "xor"},
            "model": {"activation": "Rectifier", "hidden": [8], "epochs": 200, "optimizer": "sgd",
                      "rate": 1.0e6, "momentum_start": 0.9, "distribution": "gaussian"}}
    spec = write_spec(tmp_path, "all-failed", base=base, space={"model.hidden": [[8], [9]]})
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store),
                           "--workers", "2"], cwd=tmp_path, env=env_without_services(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "refused" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "4 trials: 0 finished, 4 failed" in proc.stdout
    assert ("no trial produced train_MSE: 4 of 4 trials failed; commonest error (4 of 4): "
            "TrainingDivergedError: training diverged at epoch") in proc.stdout
    ctx = sqlite_ctx(store, "all-failed")
    parent = tracking.client(ctx.tracking_uri).get_run(ctx.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.metrics["trials_finished"] == 0
    assert parent.data.tags["sweepnet.failure_note"].startswith("no trial produced train_MSE")
    assert {"leaderboard.csv", "leaderboard.md", "census.csv", "census.png"} <= {
        a.path for a in tracking.client(ctx.tracking_uri).list_artifacts(ctx.parent_run_id)}
    board = list(csv.DictReader(open(store / "summaries" / "all-failed" / "leaderboard.csv")))
    assert [r["status"] for r in board] == ["failed"] * 4


def test_a_summary_that_cannot_be_written_fails_the_sweep_closes_the_parent_and_frees_the_lease(tmp_path):
    spec = write_spec(tmp_path, "no-summary", seeds=[1], space={"model.hidden": [[2]]})
    store = tmp_path / "store"
    (store / "summaries").mkdir(parents=True)
    (store / "summaries" / "no-summary").write_text("a file where the summary folder goes")
    cmd = [sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store), "--workers", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env_without_services(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep failed after fan-out: not "refused", not 2
    assert "sweep failed: FileExistsError" in proc.stderr and "sweep refused" not in proc.stderr
    ctx = sqlite_ctx(store, "no-summary")
    assert tracking.client(ctx.tracking_uri).get_run(ctx.parent_run_id).info.status == "FAILED"
    (store / "summaries" / "no-summary").unlink()
    again = subprocess.run(cmd, cwd=tmp_path, env=env_without_services(), capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]  # the lease was released; the finished trial is reused
    assert "1 trials: 1 finished" in again.stdout


@pytest.mark.services
def test_flow_against_real_separate_services(tmp_path, local_services):
    spec = write_spec(tmp_path, "remote", space={"model.hidden": [[2], [3]]})
    env = env_without_services(**local_services.env())
    proc = subprocess.run([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(tmp_path / "s"),
                           "--dask-address", local_services.dask_address],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = tracking.client(local_services.mlflow_tracking_uri)
    exp = c.get_experiment_by_name("remote")
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")[0]
    ctx = tracking.TrackingContext(local_services.mlflow_tracking_uri, exp.experiment_id, parent.info.run_id)
    assert sorted(s for v in statuses(ctx).values() for s in v) == ["FINISHED"] * 4
    kid = tracking.children(ctx)[0]
    assert "learning_curve.png" in {a.path for a in c.list_artifacts(kid.info.run_id)}  # proxied artifacts


def _start_flow(spec: Path, store: Path, address: str, api: str, timeout: float = 30) -> subprocess.Popen:
    env = env_without_services(PREFECT_API_URL=api, PREFECT_LOGGING_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store),
                             "--dask-address", address, "--worker-timeout", str(timeout), "--no-gradcheck"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(store: Path) -> int:
    """FINISHED trial children in a test's own store, read-only: polling with an MLflow client while the
    flow creates the sqlite file races its schema migrations (seen as a failed flow under load)."""
    return sqlite_finished(store / "mlflow.db")


def _worker_processes(state_dir: Path) -> list[psutil.Process]:
    """The worker processes under each recorded ``dask worker`` nanny."""
    procs = []
    for pid_file in (state_dir / "pids").glob("dask-worker-*.pid"):
        nanny = psutil.Process(int(pid_file.read_text().split()[0]))
        procs += nanny.children(recursive=True)
    return procs


@pytest.mark.services
def test_killed_worker_leaves_no_duplicates_and_no_orphans(tmp_path, prefect_server_url):
    from app.services import start_dask, stop_services

    state = tmp_path / "dask"
    info = start_dask(state, n_workers=2)
    try:
        spec = write_spec(tmp_path, "killed", seeds=[1, 2, 3], chunk_size=1, space={"model.hidden": [[2], [3]]},
                          base={**XOR, "model": {**XOR["model"], "epochs": 20000}})
        store = tmp_path / "store"
        proc = _start_flow(spec, store, info["address"], prefect_server_url)
        deadline = time.time() + 600
        while _finished(store) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        victim = _worker_processes(state)[0]
        victim.send_signal(signal.SIGKILL)  # kill -9 one worker mid-sweep; its nanny restarts it
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        by_key = statuses(sqlite_ctx(store, "killed"))
        assert len(by_key) == 6
        assert all(v.count("FINISHED") == 1 for v in by_key.values())
        assert not any("RUNNING" in v for v in by_key.values())
    finally:
        stop_services(state)


@pytest.mark.services
def test_chunks_go_out_as_workers_free_up_not_all_at_once(tmp_path, prefect_server_url):
    # A Prefect task future costs the driver ~80 KB and ~0.1 s: a 10^4-chunk rung mapped at once would hold
    # ~0.8 GB and block for minutes. At most IN_FLIGHT_PER_WORKER chunks per worker are out at a time.
    from distributed import Client

    from app.services import start_dask, stop_services
    from flows.sweep import IN_FLIGHT_PER_WORKER

    state = tmp_path / "dask"
    info = start_dask(state, n_workers=1)
    try:
        n_chunks = 3 * IN_FLIGHT_PER_WORKER
        spec = write_spec(tmp_path, "window", seeds=list(range(n_chunks // 2)), chunk_size=1,
                          space={"model.hidden": [[2], [3]]}, base={**XOR, "model": {**XOR["model"], "epochs": 3000}})
        store = tmp_path / "store"
        proc = _start_flow(spec, store, info["address"], prefect_server_url)
        out_at_once = []
        with Client(info["address"], timeout="30s") as client:
            while proc.poll() is None:
                out_at_once.append(client.run_on_scheduler(
                    lambda dask_scheduler: sum(ts.state != "memory" for ts in dask_scheduler.tasks.values())))
                time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        assert f"{n_chunks} trials: {n_chunks} finished" in out
        assert 1 <= max(out_at_once) <= IN_FLIGHT_PER_WORKER, out_at_once
        assert sum(v.count("FINISHED") for v in statuses(sqlite_ctx(store, "window")).values()) == n_chunks
    finally:
        stop_services(state)


@pytest.mark.services
def test_every_worker_gone_fails_within_bounded_wait(tmp_path, prefect_server_url):
    from app.services import start_dask, stop_services

    state = tmp_path / "dask"
    info = start_dask(state, n_workers=1)
    try:
        spec = write_spec(tmp_path, "gone", seeds=[1, 2, 3, 4], chunk_size=1, space={"model.hidden": [[2], [3]]},
                          base={**XOR, "model": {**XOR["model"], "epochs": 30000}})
        store = tmp_path / "store"
        proc = _start_flow(spec, store, info["address"], prefect_server_url, timeout=15)
        deadline = time.time() + 600
        while _finished(store) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        for pid_file in (state / "pids").glob("dask-worker-*.pid"):
            nanny = psutil.Process(int(pid_file.read_text().split()[0]))
            for p in [*nanny.children(recursive=True), nanny]:
                p.send_signal(signal.SIGKILL)
        killed_at = time.time()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0
        assert "every Dask worker" in err and "rerun the same command" in err
        unfinished = int(re.search(r"with (\d+) of 8 trials unfinished", err).group(1))
        assert unfinished == 8 - _finished(store)  # trials logged before the kill are not counted
        assert time.time() - killed_at < 15 + 60  # bounded: the timeout plus polling and shutdown
    finally:
        stop_services(state)


@pytest.mark.services
def test_scheduled_deployment_runs_a_sweep(tmp_path, prefect_server_url):
    spec = write_spec(tmp_path, "scheduled", seeds=[1], space={"model.hidden": [[2]]})
    store = tmp_path / "store"
    env = env_without_services(PREFECT_API_URL=prefect_server_url)
    dep = subprocess.run([sys.executable, "-m", "app", "deploy", str(spec), "--cron", "* * * * *",
                          "--store", str(store), "--name", "every-minute"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert dep.returncode == 0, dep.stderr[-3000:]

    def finished_runs() -> list[str]:
        body = {"deployments": {"name": {"any_": ["every-minute"]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}, "limit": 20}
        return [r["state_type"] for r in prefect_api(f"{prefect_server_url}/flow_runs/filter", body)]

    dep_id = re.search(r"deployment ([0-9a-f-]{36}) scheduled", dep.stdout).group(1)
    try:
        deadline = time.time() + 600  # next minute boundary + a LocalCluster sweep under load
        while time.time() < deadline and not finished_runs():
            time.sleep(5)
        assert finished_runs()[:1] == ["COMPLETED"], finished_runs()
        assert _finished(store) == 1
    finally:  # the shared server must not keep firing this schedule for the rest of the session
        prefect_api(f"{prefect_server_url}/deployments/{dep_id}", method="DELETE")


@pytest.mark.services
def test_successive_halving_runs_every_rung_and_resumes(tmp_path, local_services):
    """Rung 0 trains every configuration for 40 epochs; the best half by mean objective goes on to 400,
    continuing from its rung-0 checkpoint (fetched from the tracking server by the worker); the parent reports
    the epochs saved; a rerun of the same command finds every rung's trials done and logs nothing new."""
    spec = write_spec(tmp_path, "halving", seeds=[1, 2], space={"model.hidden": [[2], [3], [4], [5]]},
                      halving={"rungs": [40, 400], "keep": 0.5})
    env = env_without_services(**local_services.env())
    cmd = [sys.executable, "-m", "app", "sweep", str(spec), "--store", str(tmp_path / "s"),
           "--dask-address", local_services.dask_address, "--no-gradcheck"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    c = tracking.client(local_services.mlflow_tracking_uri)
    exp = c.get_experiment_by_name("halving")
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")[0]
    ctx = tracking.TrackingContext(local_services.mlflow_tracking_uri, exp.experiment_id, parent.info.run_id)
    kids = tracking.children(ctx)
    by_rung: dict[str, list] = {}
    for kid in kids:
        assert kid.info.status == "FINISHED"
        by_rung.setdefault(kid.data.tags["sweepnet.rung"], []).append(kid)
    assert sorted((rung, len(v)) for rung, v in by_rung.items()) == [("0", 8), ("1", 4)]
    assert {float(k.data.params["model.epochs"]) for k in by_rung["0"]} == {40}
    assert {float(k.data.params["model.epochs"]) for k in by_rung["1"]} == {400}
    # the promoted configurations are the best half of rung 0 by mean objective over the seeds
    means: dict[str, list[float]] = {}
    for kid in by_rung["0"]:
        means.setdefault(kid.data.params["model.hidden"], []).append(kid.data.metrics["train_MSE"])
    best_half = sorted(means, key=lambda h: sum(means[h]) / len(means[h]))[:2]
    assert {k.data.params["model.hidden"] for k in by_rung["1"]} == set(best_half)
    rung0 = {(k.data.params["model.hidden"], k.data.tags["sweepnet.seed"]): k.info.run_id for k in by_rung["0"]}
    for kid in by_rung["1"]:  # continued from the same configuration and seed's rung-0 child
        assert kid.data.tags["sweepnet.continued_from_epoch"] == "40", kid.data.tags.get("sweepnet.continue_note")
        assert kid.data.tags["sweepnet.continued_from_run"] == rung0[(kid.data.params["model.hidden"],
                                                                       kid.data.tags["sweepnet.seed"])]
        assert kid.data.metrics["epochs_trained"] == kid.data.metrics["epochs_run"] - 40
    assert c.get_run(parent.info.run_id).data.metrics["continuation_epochs_saved"] == 4 * 40
    board = list(csv.DictReader(io.StringIO(tracking.read_artifact_text(ctx, ctx.parent_run_id, "leaderboard.csv"))))
    assert [row["rung"] for row in board] == ["1"] * 4 + ["0"] * 8  # the longest-trained rung ranks first

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(tracking.children(ctx)) == 12  # nothing trained or logged twice
