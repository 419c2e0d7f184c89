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


def test_secrets_are_generated_once_into_private_files(tmp_path):
    from app.services import credentials

    first = credentials.secret(tmp_path, "mlflow-admin-password")
    assert credentials.secret(tmp_path, "mlflow-admin-password") == first and len(first) >= 32
    assert credentials.secret(tmp_path, "absent", create=False) is None
    folder = tmp_path / "secrets"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "mlflow-admin-password").stat().st_mode & 0o777) == "0o600"


def test_dask_certificates_are_private_and_signed_by_their_ca(tmp_path):
    from cryptography import x509

    from app.services import credentials

    tls = credentials.dask_tls(tmp_path, ["10.0.0.2"])
    assert {oct(Path(p).stat().st_mode & 0o777) for p in tls.values()} == {"0o600"}
    ca = x509.load_pem_x509_certificate(Path(tls["ca"]).read_bytes())
    for role in ("server", "client"):
        cert = x509.load_pem_x509_certificate(Path(tls[role]).read_bytes())
        cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.2" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert credentials.dask_tls(tmp_path, ["10.0.0.2"]) == tls  # made once, reused


def test_auth_is_on_by_default_outside_loopback_only():
    from app.services.supervisor import Locks

    assert Locks.resolve("127.0.0.1", None, None, None, None) == Locks(False, False, False)
    assert Locks.resolve("0.0.0.0", None, None, None, None) == Locks(True, True, True)
    assert Locks.resolve("10.0.0.2", False, None, None, None) == Locks(False, False, False)
    assert Locks.resolve("127.0.0.1", True, None, False, None) == Locks(True, False, True)
    assert Locks.resolve("127.0.0.1", None, None, None, True) == Locks(False, False, True)


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


def test_locked_service_set_exports_pipeline_credentials_and_tls_never_server_secrets(tmp_path):
    tls = {"ca": "/s/ca.pem", "client": "/s/client.pem", "client-key": "/s/client-key.pem",
           "server": "/s/server.pem", "server-key": "/s/server-key.pem", "ca-key": "/s/ca-key.pem"}
    svc = ServiceSet(tmp_path, dask_address="tls://127.0.0.1:8786", mlflow_tracking_uri="http://127.0.0.1:5000",
                     mlflow_auth=True, prefect_api_url="http://127.0.0.1:4200/api",
                     mlflow_credentials=("sweepnet-pipeline", "pw1"), prefect_auth_string="sweepnet:pw2",
                     dask_tls=tls)
    env = svc.env()
    assert env["MLFLOW_TRACKING_USERNAME"] == "sweepnet-pipeline" and env["MLFLOW_TRACKING_PASSWORD"] == "pw1"
    assert env["PREFECT_API_AUTH_STRING"] == "sweepnet:pw2"
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] == "/s/client-key.pem"
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert not any(v in ("/s/server-key.pem", "/s/ca-key.pem") for v in env.values())
    assert not any(k.startswith(("MLFLOW_AUTH_", "MLFLOW_FLASK")) for k in env)
    assert "pw1" not in repr(svc) and "pw2" not in repr(svc)


def test_free_port_is_bindable_on_loopback():
    import socket

    port = procs.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_wildcard_bind_tells_other_hosts_which_address_replaces_loopback():
    """`services up --host 0.0.0.0` exports 127.0.0.1 (right on this machine); users on other hosts are
    told the machine's own addresses instead of being left with an address that points at themselves."""
    import psutil

    from app.services import other_hosts_note

    mine = [a.address for nics in psutil.net_if_addrs().values() for a in nics
            if a.family.name == "AF_INET" and not a.address.startswith("127.")]
    note = other_hosts_note("0.0.0.0")
    assert note.startswith("# bound to 0.0.0.0") and "replace 127.0.0.1" in note
    assert all(addr in note for addr in mine)
    assert other_hosts_note("127.0.0.1") == "" and other_hosts_note("198.18.0.2") == ""
