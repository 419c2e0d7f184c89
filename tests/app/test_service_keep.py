"""app.services.keep: the Prefect server and Dask workers `sweepnet sweep` keeps between sweeps, with real
processes: reused by the next sweep (same PIDs), stopped by the idle watch and by `services down`, never
stopped while a sweep holds them; keeping off leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from app.services import keep, procs, service_status, stop_services

ROOT = Path(__file__).resolve().parents[2]
TINY = {"name": "kept", "base": {"name": "xor", "data": {"source": "xor"},
                                 "model": {"activation": "Tanh", "hidden": [2], "epochs": 50,
                                           "distribution": "gaussian", "standardize": False}},
        "seeds": [1, 2], "objective": {"metric": "train_MSE"}}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS")}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def _sweep(tmp_path: Path, store: Path, name: str, *flags: str, **env) -> dict:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "name": name}))
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store), "--workers", "1",
                           "--summary-json", str(out), *flags], cwd=tmp_path, env=_env(**env),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())["timing"]["services"]


def _pids(state_dir: Path) -> dict[str, int]:
    return {r["name"]: r["pid"] for r in service_status(state_dir) if r["alive"]}


def _gone(pids) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def _wait_gone(pids, limit: float = 120.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if _gone(pids):
            return True
        time.sleep(0.5)
    return _gone(pids)


@pytest.fixture
def kept_store(tmp_path):
    """A store whose kept services are stopped by PID however the test ends."""
    store = tmp_path / "store"
    yield store
    stop_services(store / "services")


def test_a_second_sweep_reuses_the_kept_server_and_workers_and_services_down_stops_them(tmp_path, kept_store):
    first = _sweep(tmp_path, kept_store, "first", "--keep-services")
    assert first["kept"] and first["reused"] == []
    state = kept_store / "services"
    running = _pids(state)
    assert {"prefect-server", "dask-scheduler", "dask-worker-0", "sweepnet-idle-watch"} <= set(running)
    second = _sweep(tmp_path, kept_store, "second", "--keep-services")
    assert second["reused"] == ["prefect", "dask"]
    assert _pids(state) == running  # the same processes served both sweeps
    status = subprocess.run([sys.executable, "-m", "app", "services", "status", "--state-dir", str(state)],
                            env=_env(), capture_output=True, text=True, timeout=60)
    assert "# kept between sweeps: prefect, dask unused for" in status.stdout, status.stdout
    down = subprocess.run([sys.executable, "-m", "app", "services", "down", "--state-dir", str(state)],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and "prefect-server" in down.stdout, down.stderr
    assert _gone(running.values())
    assert service_status(state) == []


def test_the_idle_watch_stops_what_a_sweep_kept_once_unused(tmp_path, kept_store):
    _sweep(tmp_path, kept_store, "idle", "--keep-services", SWEEPNET_SERVICES_IDLE_S="20")
    state = kept_store / "services"
    running = _pids(state)
    assert "prefect-server" in running and "sweepnet-idle-watch" in running
    assert _wait_gone(running.values()), f"still running: {_pids(state)}"
    assert procs.read_state(state)["processes"] == {}  # the watch removed its own record last


def test_the_watch_leaves_services_alone_while_a_command_holds_them(tmp_path):
    state = tmp_path / "services"
    try:
        with keep.kept_services(state, idle_s=0.5) as info:
            assert info["started"].keys() == {"prefect"} and info["dask_address"] is None
            server = _pids(state)["prefect-server"]
            time.sleep(3)  # six idle timeouts: the in-use mark keeps the server
            assert keep.busy(state) and psutil.pid_exists(server)
            assert procs.http_status(info["api_url"] + "/health") == 200
        assert _wait_gone([server])  # released: the watch stops it
    finally:
        stop_services(state)


def test_keeping_off_leaves_nothing_running(tmp_path):
    store = tmp_path / "store"
    services = _sweep(tmp_path, store, "off")  # the tests' default: SWEEPNET_KEEP_SERVICES=0 (tests/conftest.py)
    assert services["kept"] is False and services["reused"] == []
    assert _pids(store / "services") == {} and _pids(store / "prefect-for-sweeps") == {}
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(store) in " ".join(p.info["cmdline"] or [])]


def test_keep_settings_are_read_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv(keep.KEEP_ENV, raising=False)
    assert keep.keep_enabled() is True and keep.keep_enabled(False) is False
    monkeypatch.setenv(keep.KEEP_ENV, "0")
    assert keep.keep_enabled() is False and keep.keep_enabled(True) is True
    monkeypatch.setenv(keep.IDLE_ENV, "soon")
    with pytest.raises(ValueError, match=r"SWEEPNET_SERVICES_IDLE_S='soon' is not a number of seconds; set e.g."):
        keep.idle_seconds()
    monkeypatch.setenv(keep.IDLE_ENV, "0")
    with pytest.raises(ValueError, match=r"must be > 0 seconds; use --no-keep-services"):
        keep.idle_seconds()


def test_a_new_local_prefect_servers_database_is_a_copy_of_the_first_migrated_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPNET_CACHE_DIR", str(tmp_path / "cache"))
    seeded = {}
    for name in ("first", "second"):
        state = tmp_path / name
        try:
            with keep.kept_services(state, idle_s=60) as info:
                # the server answered a flow-run query on the copied database (start_prefect's readiness check)
                assert procs.http_status(info["api_url"] + "/flow_runs/filter", body={"limit": 1}) == 200
                seeded[name] = procs.read_state(state)["services"]["prefect"]["seeded_db"]
        finally:
            stop_services(state)
    assert seeded == {"first": False, "second": True}
    assert list((tmp_path / "cache").glob("prefect-*-empty.db"))
