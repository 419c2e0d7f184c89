"""What each package makes public, checked by parsing the source (ast).

- every package's ``__init__.py`` declares ``__all__``, and every name in it is defined there;
- no module imports a private (``_name``) name or module of another package: what crosses a package boundary is
  public (within a package, private jitted kernels are composed by their siblings, as stumpy's are);
- modules stay readable: at most 400 lines, function bodies at most 50 lines.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("kernels", "pipeline", "flows", "app")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 50


def _sources():
    return [f for floor in FLOORS for f in sorted((ROOT / floor).rglob("*.py"))]


def _packages():
    return sorted({f.parent for f in _sources() if f.name == "__init__.py"})


def _private_imports(path: Path, package: str | None = None) -> list[str]:
    """``from X import _name`` and ``import X._name`` of private names (dunders are fine) outside ``package``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{node.module}.{a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
            found += [node.module] if any(p.startswith("_") and not p.startswith("__")
                                          for p in node.module.split(".")) else []
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names
                      if any(p.startswith("_") and not p.startswith("__") for p in a.name.split("."))]
    return [name for name in found if name.split(".")[0] in FLOORS
            and (package is None or not _in_package(name, package))]


def _in_package(name: str, package: str) -> bool:
    """Whether the module named by ``name`` (``pkg.mod`` or ``pkg.mod._attr``) lives directly in ``package``."""
    parts = name.split(".")
    module = parts[:-1] if len(parts) > 1 and not (ROOT / Path(*parts)).with_suffix(".py").exists() else parts
    return ".".join(module[:-1]) == package


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


@pytest.mark.parametrize("package", _packages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_declares_its_public_api(package):
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    declared = [node for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in node.targets)]
    assert declared, f"{package.relative_to(ROOT)}/__init__.py has no __all__"
    lazy = any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body)
    if lazy:  # PEP 562: names resolved on first use; tests/<floor>/test_*_api.py import each of them
        return
    names = ast.literal_eval(declared[0].value)
    defined = {a.asname or a.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for a in node.names}
    defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)}
    defined |= {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    missing = [n for n in names if n not in defined]
    assert not missing, f"{package.relative_to(ROOT)}/__init__.py lists undefined names {missing}"


def test_no_module_imports_private_names_of_another_package():
    found = [f"{f.relative_to(ROOT)}: {name}" for f in _sources() for name in _private_imports(f, _package_of(f))]
    assert found == []


def test_modules_and_functions_stay_small():
    too_big = []
    for f in _sources():
        text = f.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{f.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring does not count
                lines = body[-1].end_lineno - body[0].lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_big.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}() body is {lines} lines")
    assert too_big == []


@pytest.mark.parametrize("source,expected", [
    ("from pipeline._service_procs import free_port", ["pipeline._service_procs"]),
    ("from pipeline.sweep.runner import _fmt", ["pipeline.sweep.runner._fmt"]),
    ("from kernels import _jit", ["kernels._jit"]),
    ("from pipeline import tracking\nfrom __future__ import annotations", []),
    ("from numpy import _pytesttester", []),  # other libraries are not ours to police
])
def test_the_private_import_check_sees_each_form(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _private_imports(path) == expected


def test_private_names_are_allowed_within_their_own_package():
    assert _in_package("kernels.dense._forward", "kernels")
    assert _in_package("kernels._jit", "kernels")
    assert not _in_package("kernels.dense._forward", "pipeline")
    assert not _in_package("pipeline.sweep.runner._fmt", "pipeline")
