"""Import layering, checked by parsing the source (ast), never by importing it.

kernels/   imports only numpy, numba, the standard library and kernels itself
pipeline/  never imports prefect or flows
flows/     may import anything (it sits on top)
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _imports(path):
    """Top-level module names imported by one file (static imports and literal dynamic ones)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = getattr(func, "attr", getattr(func, "id", None))
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


def _files(package):
    files = sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts]


def _violations(package, allowed=None, forbidden=()):
    found = []
    for path in _files(package):
        for name in sorted(_imports(path)):
            if name in forbidden or (allowed is not None and name not in allowed):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_packages_exist():
    for package in ("kernels", "pipeline", "flows"):
        assert _files(package), f"{package}/ has no Python files"


def test_kernels_use_only_numpy_numba_and_the_standard_library():
    allowed = STDLIB | {"numpy", "numba", "kernels"}
    assert _violations("kernels", allowed=allowed) == []


def test_pipeline_never_imports_prefect_or_flows():
    assert _violations("pipeline", forbidden={"prefect", "prefect_dask", "flows"}) == []


def test_kernels_never_import_pipeline_or_flows():
    assert _violations("kernels", forbidden={"pipeline", "flows"}) == []


@pytest.mark.parametrize("source,expected", [
    ("import prefect", {"prefect"}),
    ("from prefect.tasks import task", {"prefect"}),
    ("import numpy as np, os.path", {"numpy", "os"}),
    ("from . import dense\nfrom .layout import make_layout", set()),
    ("def f():\n    import flows.sweep", {"flows"}),
    ("importlib.import_module('prefect')", {"prefect"}),
    ("__import__('pipeline.config')", {"pipeline"}),
])
def test_the_parser_sees_every_import_form(tmp_path, source, expected):
    path = tmp_path / "module.py"
    path.write_text(source)
    assert _imports(path) == expected
