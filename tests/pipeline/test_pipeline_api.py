"""What each pipeline package declares public (``__all__``), and that ``import pipeline`` stays cheap."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("package", ["pipeline", "pipeline.datasets", "pipeline.features", "pipeline.sweep"])
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_import_pipeline_loads_no_heavy_dependency():
    code = ("import sys, pipeline; heavy = [m for m in ('numpy', 'pydantic', 'mlflow', 'matplotlib', 'numba') "
            "if m in sys.modules]; print(','.join(heavy))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == ""


def test_submodules_stay_importable_through_the_lazy_package():
    from pipeline import metrics, tracking  # noqa: F401 (module attributes, not lazy names)

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        importlib.import_module("pipeline").nonexistent
