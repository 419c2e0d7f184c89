"""Locked services (as beyond loopback, forced on by flag, on 127.0.0.1): each refuses a client with no or wrong
credentials — MLflow 401, Prefect 401, Dask a failed TLS handshake — and the exported environment works, up to a
whole sweep. Real servers on a real PostgreSQL backend; no mocks."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from app.services import credentials, dask_security, http_status, read_state
from tests.services import locked_services  # noqa: F401  (session fixture)

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 200, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_mlflow_refuses_missing_and_wrong_credentials_and_the_pipeline_user_is_no_admin(locked_services):
    uri = locked_services.mlflow_tracking_uri
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    user, password = locked_services.mlflow_credentials
    assert http_status(f"{uri}/health") == 200
    assert http_status(search) == 401
    assert http_status(search, auth=(user, "wrong")) == 401
    assert http_status(search, auth=("admin", password)) == 401
    assert http_status(search, auth=(user, password)) == 200
    # a worker credential cannot make users: the admin password stays with the operator
    create = {"username": "intruder", "password": "intruder-password-1"}
    assert http_status(f"{uri}/api/2.0/mlflow/users/create", body=create, auth=(user, password)) == 403
    ini = locked_services.state_dir / "mlflow" / "basic_auth.ini"
    assert "auth_cache_ttl_seconds = 60" in ini.read_text()
    assert oct(ini.stat().st_mode & 0o777) == "0o600"


def test_prefect_refuses_missing_and_wrong_auth_string_and_admits_only_the_ui_origin(locked_services):
    api = locked_services.prefect_api_url
    query = f"{api}/flow_runs/filter"
    user, password = locked_services.prefect_auth_string.split(":", 1)
    assert http_status(f"{api}/health") == 200  # probes stay open
    assert http_status(query, body={"limit": 1}) == 401
    assert http_status(query, body={"limit": 1}, auth=(user, "wrong")) == 401
    assert http_status(query, body={"limit": 1}, auth=(user, password)) == 200
    origin = api.removesuffix("/api")

    def preflight(from_origin: str) -> tuple[int, str | None]:
        req = urllib.request.Request(query, method="OPTIONS", headers={
            "Origin": from_origin, "Access-Control-Request-Method": "POST"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers.get("access-control-allow-origin")
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("access-control-allow-origin")

    assert preflight(origin) == (200, origin)
    status, allowed = preflight("http://evil.example")
    assert status == 400 and allowed is None


def test_dask_refuses_plaintext_no_certificate_and_a_foreign_ca(locked_services, tmp_path):
    from distributed import Client

    address = locked_services.dask_address
    assert address.startswith("tls://")
    host, port = _host_port(address)
    with pytest.raises(OSError):  # a client without TLS configuration speaks plain TCP
        Client(f"tcp://{host}:{port}", timeout="5s", set_as_default=False)
    # a TLS client that trusts our CA but shows no certificate: the server aborts the handshake
    ctx = ssl.create_default_context(cafile=locked_services.dask_tls["ca"])
    ctx.check_hostname = False
    with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED|certificate required"):
            tls.recv(1)  # TLS 1.3: the server's alert arrives after the client's side of the handshake
    # a certificate from another CA: refused as well
    foreign = credentials.dask_tls(tmp_path, [host])
    with pytest.raises(OSError):
        Client(address, timeout="5s", set_as_default=False,
               security=dask_security({**foreign, "ca": locked_services.dask_tls["ca"]}))
    with Client(address, timeout="30s", set_as_default=False,
                security=dask_security(locked_services.dask_tls)) as client:
        assert len(client.nthreads()) == 2
        seen = client.run(lambda: dict(os.environ))
    admin = (locked_services.state_dir / "secrets" / "mlflow-admin-password").read_text().strip()
    for worker_env in seen.values():  # workers hold the pipeline user's credentials, never a server secret
        assert worker_env["MLFLOW_TRACKING_USERNAME"] == "sweepnet-pipeline"
        assert worker_env["PREFECT_API_AUTH_STRING"] == locked_services.prefect_auth_string
        assert admin not in json.dumps(worker_env)
        assert not {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_BACKEND_STORE_URI",
                    "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_DATABASE_CONNECTION_URL"} & set(worker_env)


def test_secrets_are_private_and_never_in_state_logs_or_command_lines(locked_services):
    state = locked_services.state_dir
    secret_files = [p for p in (state / "secrets").rglob("*") if p.is_file()]
    assert {oct(p.stat().st_mode & 0o777) for p in secret_files} == {"0o600"}
    values = [p.read_text().strip() for p in secret_files if p.suffix != ".pem"]
    public = [state / "services.json", *(state / "logs").iterdir()]
    cmdlines = json.dumps([r["cmd"] for r in read_state(state)["processes"].values()])
    assert oct((state / "services.json").stat().st_mode & 0o777) == "0o600"
    assert {oct(p.stat().st_mode & 0o777) for p in (state / "logs").iterdir()} == {"0o600"}
    for folder in ("mlflow", "prefect", "dask", "logs", "pids", "secrets"):  # mlflow/ holds the auth user store
        assert oct((state / folder).stat().st_mode & 0o777) == "0o700", folder
    for value in values:
        assert value not in cmdlines
        assert not [p for p in public if value in p.read_text(errors="replace")]


def _sweep(tmp_path: Path, name: str, env: dict[str, str], address: str) -> subprocess.CompletedProcess:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "base": XOR, "seeds": [1, 2], "chunk_size": 2,
                                    "objective": {"metric": "train_MSE"},
                                    "space": {"model.hidden": [[2], [3]]}}))
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "PREFECT_API", "SWEEPNET_", "DASK_DISTRIBUTED__COMM"))}
    return subprocess.run([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(tmp_path / "s"),
                           "--dask-address", address, "--summary-json", str(tmp_path / "summary.json")],
                          cwd=tmp_path, env={**base, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=900)


def _children_once(locked_services, name: str, n: int) -> None:
    from pipeline import tracking

    c = tracking.client(locked_services.mlflow_tracking_uri)
    exp = c.get_experiment_by_name(name)
    parent = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    ctx = tracking.TrackingContext(locked_services.mlflow_tracking_uri, exp.experiment_id, parent[0].info.run_id)
    kids = tracking.children(ctx)
    keys = [r.data.tags[tracking.TAG_KEY] for r in kids]
    assert len(keys) == n and len(set(keys)) == n  # every trial once
    assert {r.info.status for r in kids} == {"FINISHED"}


def test_sweep_with_the_exported_environment_logs_every_trial_once(locked_services, tmp_path, monkeypatch):
    env = locked_services.env()
    proc = _sweep(tmp_path, f"locked-{tmp_path.name}", env, env["SWEEPNET_DASK_ADDRESS"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key, value in env.items():  # read back as the pipeline user
        monkeypatch.setenv(key, value)
    _children_once(locked_services, f"locked-{tmp_path.name}", 4)


def test_credentials_in_the_tracking_uri_reach_no_prefect_parameter_summary_or_output(locked_services, tmp_path,
                                                                                    monkeypatch):
    env = locked_services.env()
    user, password = env.pop("MLFLOW_TRACKING_USERNAME"), env.pop("MLFLOW_TRACKING_PASSWORD")
    env["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"].replace("http://", f"http://{user}:{password}@")
    name = f"userinfo-{tmp_path.name}"
    proc = _sweep(tmp_path, name, env, env["SWEEPNET_DASK_ADDRESS"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert password not in proc.stdout + proc.stderr
    summary = (tmp_path / "summary.json").read_text()
    assert json.loads(summary)["tracking_uri"] == locked_services.mlflow_tracking_uri and password not in summary
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"],
                             PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"]}):
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(limit=200)
    params = [r.parameters for r in runs if r.parameters.get("spec", "").endswith(f"{name}.yaml")]
    assert params and params[0]["tracking_uri"] == locked_services.mlflow_tracking_uri
    assert password not in json.dumps([r.parameters for r in runs], default=str)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    _children_once(locked_services, name, 4)
