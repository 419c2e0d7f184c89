"""Process bookkeeping of app.services, on plain `sleep` processes (no servers needed)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import psutil
import pytest

from app.services import procs
from app.services import ServiceError, ServiceSet, start_services, stop_services

SLEEPER = [sys.executable, "-c",
           "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
           "'import time; time.sleep(60)']); time.sleep(60)"]


def _spawn_sleeper(state_dir: Path, name: str = "dask-worker-0") -> procs.ProcRecord:
    rec = procs.spawn(state_dir, name, "dask", SLEEPER, os.environ)
    state = procs.read_state(state_dir)
    state["processes"][rec.name] = procs.record_dict(rec)
    procs.write_state(state_dir, state)
    return rec


def _children(rec: procs.ProcRecord, n: int) -> list[psutil.Process]:
    proc = psutil.Process(rec.pid)
    procs.wait_until(lambda: len(proc.children()) >= n, [rec], "the sleeper's child", 30)
    return [proc, *proc.children(recursive=True)]


def test_stop_services_kills_the_whole_process_group_and_clears_state(tmp_path):
    rec = _spawn_sleeper(tmp_path)
    family = _children(rec, 1)
    assert (tmp_path / "pids" / "dask-worker-0.pid").read_text().strip() == str(rec.pid)
    assert stop_services(tmp_path, only="dask", timeout=5) == ["dask-worker-0"]
    _, alive = psutil.wait_procs(family, timeout=5)
    assert alive == []
    assert procs.read_state(tmp_path)["processes"] == {}
    assert not (tmp_path / "pids" / "dask-worker-0.pid").exists()


def test_a_reused_pid_is_never_signalled(tmp_path):
    rec = _spawn_sleeper(tmp_path)
    family = _children(rec, 1)
    impostor = dataclasses.replace(rec, create_time=rec.create_time - 3600)
    assert not procs.is_alive(impostor)
    assert procs.stop(impostor, timeout=1) is False
    assert all(p.is_running() for p in family)
    assert procs.stop(rec, timeout=5) is True
    _, alive = psutil.wait_procs(family, timeout=5)
    assert alive == []


def test_wait_until_reports_the_log_of_a_process_that_died(tmp_path):
    rec = procs.spawn(tmp_path, "mlflow-server", "mlflow",
                      [sys.executable, "-c", "print('port already in use'); raise SystemExit(3)"],
                      os.environ)
    with pytest.raises(ServiceError, match="port already in use"):
        procs.wait_until(lambda: False, [rec], "a server that exits", timeout=30)


def test_unknown_service_names_are_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="choose from dask,mlflow,prefect"):
        start_services("dask,redis", state_dir=tmp_path)


def test_mlflow_auth_without_secrets_fails_before_starting(tmp_path, monkeypatch):
    pytest.importorskip("flask_wtf", reason="needs the auth extra: pip install 'mlflow[auth]==3.17.2'")
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    with pytest.raises(ServiceError, match="MLFLOW_FLASK_SERVER_SECRET_KEY and MLFLOW_AUTH_ADMIN"):
        start_services("mlflow", state_dir=tmp_path, mlflow_auth=True)
    assert procs.read_state(tmp_path)["processes"] == {}


def test_service_set_exports_the_client_environment(tmp_path):
    svc = ServiceSet(tmp_path, dask_address="tcp://127.0.0.1:8786",
                     mlflow_tracking_uri="http://127.0.0.1:5000", mlflow_auth=True,
                     prefect_api_url="http://127.0.0.1:4200/api")
    assert svc.env() == {"SWEEPNET_DASK_ADDRESS": "tcp://127.0.0.1:8786",
                         "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
                         "PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    lines = svc.exports().splitlines()
    assert lines[0] == "export SWEEPNET_DASK_ADDRESS=tcp://127.0.0.1:8786"
    assert "MLFLOW_TRACKING_USERNAME" in lines[-1] and "PASSWORD=" not in svc.exports()


def test_free_port_is_bindable_on_loopback():
    import socket

    port = procs.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
