"""infra/README.md matches the files: every file it names exists, and every manifest and template is described."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
README = (INFRA / "README.md").read_text()


def test_every_file_the_readme_names_exists():
    named = set(re.findall(r"`([\w./\-]+\.(?:ya?ml|py|sh|txt|ini))`", README))
    named |= set(re.findall(r"(?<![\w/])(infra/[\w./\-]+\.(?:ya?ml|py|sh|txt|ini))", README))
    assert len(named) >= 10
    missing = [n for n in named if not any((base / n).exists() for base in (ROOT, INFRA, INFRA / "k8s",
                                                                             INFRA / "compose"))]
    assert missing == []


def test_every_manifest_and_template_is_described():
    described = [*INFRA.glob("k8s/*.yaml"), *INFRA.glob("k8s/prefect/*.yaml"), *INFRA.glob("prefect/*.yaml"),
                 INFRA / "compose" / "mlflow" / "create-pipeline-user.py"]
    for path in described:
        if path.name == "kustomization.yaml":
            continue
        rel = path.relative_to(INFRA)
        assert path.name in README or str(rel) in README, rel
    for flag in ("--pool-type", "--job-template", "--store", "--workers", "--serve"):
        assert flag in README, flag
