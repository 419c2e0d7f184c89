"""Import layering, checked by parsing the source (ast), never by importing it.

Dependencies point one way, kernels <- pipeline <- flows <- app:

kernels/   imports only numpy, numba, the standard library and kernels itself
pipeline/  imports kernels, never prefect, flows or app
flows/     imports pipeline and kernels, never app, and never parses argv (no argparse)
app/       may import anything (it sits on top)

Every import form counts: ``import``/``from`` statements (also inside functions), literal
``import_module``/``__import__`` calls, and ``python -m PACKAGE`` module names in string literals or
argument lists (a subprocess that runs a higher floor is still an upward dependency).
"""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
FLOORS = ("kernels", "pipeline", "flows", "app")
_DASH_M = re.compile(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)")


def _run_module_names(node):
    """Module names run with ``-m``: ``"python -m flows.sweep"`` strings and ``[..., "-m", "flows.sweep"]`` lists."""
    names = set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        names.update(m.split(".")[0] for m in _DASH_M.findall(node.value))
    elif isinstance(node, (ast.List, ast.Tuple)):
        items = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts]
        names.update(nxt.split(".")[0] for cur, nxt in zip(items, items[1:]) if cur == "-m" and nxt)
    return names


def _imports(path):
    """Top-level module names a file depends on (static imports, literal dynamic ones and ``-m`` runs)."""
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
        names.update(_run_module_names(node))
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
    for package in FLOORS:
        assert _files(package), f"{package}/ has no Python files"


def test_kernels_use_only_numpy_numba_and_the_standard_library():
    allowed = STDLIB | {"numpy", "numba", "kernels"}
    assert _violations("kernels", allowed=allowed) == []


def test_kernels_never_import_a_higher_floor():
    assert _violations("kernels", forbidden={"pipeline", "flows", "app"}) == []


def test_pipeline_never_imports_prefect_flows_or_app():
    assert _violations("pipeline", forbidden={"prefect", "prefect_dask", "flows", "app"}) == []


def test_flows_never_import_app_or_argparse():
    assert _violations("flows", forbidden={"app", "argparse"}) == []


def test_the_checker_sees_a_wrong_way_edge(tmp_path, monkeypatch):
    """A pipeline module that runs ``python -m flows.sweep`` is reported (the check is not vacuous)."""
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "bad.py").write_text('import sys\ncmd = [sys.executable, "-m", "flows.sweep"]\n')
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations("pipeline", forbidden={"flows"}) == ["pipeline/bad.py imports flows"]


@pytest.mark.parametrize("source,expected", [
    ("import prefect", {"prefect"}),
    ("from prefect.tasks import task", {"prefect"}),
    ("import numpy as np, os.path", {"numpy", "os"}),
    ("from . import dense\nfrom .layout import make_layout", set()),
    ("def f():\n    import flows.sweep", {"flows"}),
    ("importlib.import_module('prefect')", {"prefect"}),
    ("__import__('pipeline.config')", {"pipeline"}),
    ("cmd = [sys.executable, '-m', 'flows.sweep', spec]", {"flows"}),
    ("cmd = ('python', '-m', 'app', 'sweep')", {"app"}),
    ("os.system('python -m app.cli sweep x.yaml')", {"app"}),
    ("text = 'a -minus sign, not a module run'", set()),
])
def test_the_parser_sees_every_import_form(tmp_path, source, expected):
    path = tmp_path / "module.py"
    path.write_text(source)
    assert _imports(path) == expected
