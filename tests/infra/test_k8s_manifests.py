"""Structure of the Kubernetes manifests in infra/k8s (no cluster here: parsed, not applied)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
PINNED = re.compile(r"^[\w.\-/]+:(?!latest$)\d[\w.\-]*$")
CLUSTER_SCOPED = {"Namespace"}


def _docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def _containers(node):
    """Every container spec anywhere in a manifest (Deployments, DaskCluster, Job templates)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _kinds() -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for _, d in _docs()}


def test_every_object_has_api_version_kind_metadata_and_a_body():
    docs = _docs()
    assert len(docs) >= 10
    for fname, doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), (fname, doc.get("kind"))
        assert doc["metadata"]["name"], fname
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "sweepnet", (fname, doc["kind"])
        assert doc["kind"] in ("Namespace", "ServiceAccount") or \
            {"spec", "data", "rules", "subjects"} & set(doc), (fname, doc["kind"])


def test_every_file_is_commented():
    for path in [*MANIFESTS, K8S / "kustomization.yaml"]:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        assert lines[0].startswith("#"), path.name
        assert sum("#" in ln for ln in lines) >= len(lines) // 8, path.name


def test_every_container_image_is_pinned_and_the_same_sweepnet_image():
    images = {c["image"] for _, d in _docs() for c in _containers(d)}
    assert images == {"registry.example.com/sweepnet:0.1.0"}
    assert all(PINNED.match(image) for image in images)


def test_dask_cluster_for_the_operator_with_adaptive_scaling():
    kinds = _kinds()
    cluster = kinds["DaskCluster/sweepnet"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["dask", "worker"]
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "1"
    scheduler = cluster["spec"]["scheduler"]
    ports = {p["name"]: p["port"] for p in scheduler["service"]["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert scheduler["service"]["type"] == "ClusterIP"
    assert scheduler["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/health"
    scaler = kinds["DaskAutoscaler/sweepnet"]["spec"]
    assert scaler["cluster"] == "sweepnet" and 1 <= scaler["minimum"] < scaler["maximum"]


def test_prefect_worker_uses_a_kubernetes_pool_with_a_valid_base_job_template():
    kinds = _kinds()
    deploy = kinds["Deployment/prefect-worker"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(container["args"])
    assert "--type kubernetes" in command and "--base-job-template" in command
    assert "--install-policy never" in command and "pip install" not in command
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "prefect-worker"
    assert kinds["RoleBinding/prefect-worker"]["roleRef"]["name"] == "prefect-worker"
    job_rules = [r for r in kinds["Role/prefect-worker"]["rules"] if "jobs" in r["resources"]]
    assert "create" in job_rules[0]["verbs"]
    cm = kinds["ConfigMap/prefect-base-job-template"]["data"]["base-job-template.yaml"]
    template = yaml.safe_load(cm)
    manifest = template["job_configuration"]["job_manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    props = template["variables"]["properties"]
    assert PINNED.match(props["image"]["default"]) and props["namespace"]["default"] == "sweepnet"
    placeholders = set(re.findall(r"\{\{ (\w+) \}\}", cm))
    assert placeholders <= set(props), placeholders - set(props)


def test_mlflow_deployment_reads_secrets_from_a_secret_and_is_cluster_internal():
    kinds = _kinds()
    spec = kinds["Deployment/mlflow"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert "--app-name=basic-auth" in container["args"] and "--serve-artifacts" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    for key in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD",
                "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "sweepnet-mlflow", key
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    service = kinds["Service/mlflow"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == kinds["Deployment/mlflow"]["spec"]["selector"]["matchLabels"]
    assert not [d for _, d in _docs() if d["kind"] == "Secret"]  # secrets are created out of band


def test_no_service_is_exposed_outside_the_cluster():
    for fname, doc in _docs():
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", fname
        assert doc["kind"] != "Ingress", fname


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_every_manifest():
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(rendered) == len(_docs())
