"""A small reader of infra/k8s/kustomization.yaml: the fields it uses, rendered as `kubectl kustomize` would.

No kubectl here, so the tests render with this instead of skipping. It refuses any kustomization field it does
not implement, so a new field in the file cannot be silently ignored by the tests.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

FIELDS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "generatorOptions", "images"}
CLUSTER_SCOPED = {"Namespace"}


def containers(node):
    """Every container spec anywhere in an object (Deployments, StatefulSets, DaskCluster, Job templates)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


def _config_maps(root: Path, spec: dict) -> list[dict]:
    options = spec.get("generatorOptions", {})
    if spec.get("configMapGenerator") and not options.get("disableNameSuffixHash"):
        raise NotImplementedError("name-suffix hashes are not rendered here; set disableNameSuffixHash")
    out = []
    for gen in spec.get("configMapGenerator", []):
        if set(gen) - {"name", "files"}:
            raise NotImplementedError(f"configMapGenerator fields {sorted(set(gen) - {'name', 'files'})}")
        data = {}
        for item in gen["files"]:
            key, _, path = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
            source = (root / path).resolve()
            if root.resolve() not in source.parents:
                raise ValueError(f"{item}: kustomize loads no file outside {root}")
            data[key] = source.read_text()
        meta = {"name": gen["name"]}
        if options.get("labels"):
            meta["labels"] = dict(options["labels"])
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    return out


def _retag(doc: dict, images: list[dict]) -> None:
    for container in containers(doc):
        name, _, tag = container["image"].rpartition(":")
        for rule in images:
            if rule["name"] == name:
                container["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"


def render(root: Path) -> list[dict]:
    """The objects ``kubectl kustomize ROOT`` prints, in resource order, generated ConfigMaps last."""
    spec = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(spec) - FIELDS
    if unknown:
        raise NotImplementedError(f"kustomization fields not rendered by tests/infra/kustomize.py: {sorted(unknown)}")
    docs = [copy.deepcopy(d) for r in spec["resources"] for d in yaml.safe_load_all((root / r).read_text()) if d]
    docs += _config_maps(root, spec)
    for doc in docs:
        if spec.get("namespace") and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = spec["namespace"]
        _retag(doc, spec.get("images", []))
    return docs
