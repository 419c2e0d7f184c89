"""kernels/__init__.py: the public API, and code outside kernels/ importing only it."""

import ast
from pathlib import Path

import pytest

import kernels

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = ("pipeline", "flows", "app", "benchmarks")


def test_every_public_name_resolves_and_is_not_private():
    assert len(set(kernels.__all__)) == len(kernels.__all__)
    for name in kernels.__all__:
        assert not name.startswith("_")
        assert getattr(kernels, name) is not None


def test_one_re_export_a_line():
    tree = ast.parse((ROOT / "kernels" / "__init__.py").read_text())
    exported = [alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert all(len(node.names) == 1 for node in tree.body if isinstance(node, ast.ImportFrom))
    assert sorted(exported) == sorted(kernels.__all__)


def _kernels_imports(path):
    """(line, module) of every import of kernels or a kernels submodule in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "kernels":
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name.split(".")[0] == "kernels"]
    return found


@pytest.mark.parametrize("package", OUTSIDE)
def test_code_outside_kernels_imports_only_the_public_api(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module, names in _kernels_imports(path):
            if module != "kernels" or any(name not in kernels.__all__ for name in names):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} {names}")
    assert wrong == [], "import these through `from kernels import name` (kernels.__all__)"
