"""The Optuna strategy through the real flow (Prefect server, Dask scheduler and workers, MLflow on sqlite):
the flow process is killed mid-study, the same command is run again, and the study it resumes ends with
exactly ``n_trials`` trials, every trial logged once and tagged with its Optuna trial number."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from pipeline import tracking
from tests.flows.test_sweep_flow import XOR, env_without_services, sqlite_ctx
from tests.reliability.helpers import sqlite_finished
from tests.services import (  # noqa: F401  (session fixtures of real local services)
    local_services, prefect_server_url, sweepnet_service_pool)

N_TRIALS = 6


def optuna_spec(folder: Path) -> Path:
    raw = {"name": "tpe-resume", "base": {**XOR, "model": {**XOR["model"], "epochs": 4000}}, "seeds": [1, 2],
           "objective": {"metric": "train_MSE"}, "chunk_size": 2,
           "strategy": {"kind": "Optuna", "sampler": "tpe", "n_trials": N_TRIALS, "seed": 5, "max_concurrent": 2},
           "space": {"model.hidden": [[2], [3]], "model.rate": {"loguniform": [0.01, 0.5]}}}
    path = folder / "tpe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def sweep_cmd(spec: Path, store: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store), "--dask-address", address,
            "--no-gradcheck"]


def wait_idle(address: str, limit: float = 300) -> None:
    """Until the killed run's last chunk has left the workers (it would otherwise log beside the rerun)."""
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as c:
        deadline = time.time() + limit
        while any(c.processing().values()) and time.time() < deadline:
            time.sleep(0.5)


@pytest.mark.services
def test_killed_optuna_sweep_resumes_the_same_study_without_duplicates(tmp_path, prefect_server_url):
    from app.services import start_dask, stop_services

    state, store = tmp_path / "dask", tmp_path / "store"
    info = start_dask(state, n_workers=2)
    env = env_without_services(PREFECT_API_URL=prefect_server_url, PREFECT_LOGGING_LEVEL="WARNING")
    cmd = sweep_cmd(optuna_spec(tmp_path), store, info["address"])
    try:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.time() + 600
        while sqlite_finished(store / "mlflow.db") < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be killed mid-study"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        storage = f"sqlite:///{store / 'optuna.db'}"
        name = optuna.get_all_study_names(storage)[0]
        cut = optuna.load_study(study_name=name, storage=storage).trials
        assert any(t.state.name == "RUNNING" for t in cut) and len(cut) < N_TRIALS + 2
        wait_idle(info["address"])

        again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert optuna.get_all_study_names(storage) == [name]  # the same study, resumed
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert len(trials) == N_TRIALS and all(t.state.is_finished() for t in trials)
        assert [t.params for t in trials[: len(cut)]] == [t.params for t in cut]
        ctx = sqlite_ctx(store, "tpe-resume")
        kids = tracking.children(ctx, status="FINISHED")
        assert max(Counter(r.data.tags[tracking.TAG_KEY] for r in kids).values()) == 1
        every = [(r.info.status, r.data.tags.get("sweepnet.optuna_trial"), r.data.tags.get(tracking.TAG_ERROR, "")[:200])
                 for r in tracking.children(ctx)]
        numbers = {int(n) for _, n, _ in every}
        told = [(t.number, t.state.name, t.value) for t in trials]
        assert numbers == set(range(N_TRIALS)), (every, told)  # every Optuna trial has its children
        arts = {a.path for a in tracking.client(ctx.tracking_uri).list_artifacts(ctx.parent_run_id)}
        assert {"optuna_history.png", "optuna_trials.csv", "leaderboard.csv"} <= arts
    finally:
        stop_services(state)
