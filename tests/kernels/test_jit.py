"""kernels/_jit.py is the one JIT policy: every jitted function in kernels/ is compiled through it."""

import importlib
import pkgutil

import numba
import pytest

import kernels
from kernels._jit import FASTMATH

MODULES = [importlib.import_module(f"kernels.{info.name}") for info in pkgutil.iter_modules(kernels.__path__)]


def _dispatchers():
    for module in MODULES:
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", obj


def test_there_are_kernels_to_check():
    assert len(list(_dispatchers())) > 40


@pytest.mark.parametrize("name,dispatcher", list(_dispatchers()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_kernel_follows_the_policy(name, dispatcher):
    options = dispatcher.targetoptions
    # fastmath without nnan/ninf keeps NaN checks working; cached, GIL-free, never object mode
    assert options["fastmath"] == FASTMATH and not {"nnan", "ninf", "fast"} & set(options["fastmath"])
    assert options["nopython"] and options["nogil"] and options["error_model"] == "numpy"
    assert type(dispatcher._cache).__name__ == "FunctionCache", f"{name} is not cache=True"
    if options.get("parallel"):
        assert name.split(".")[-1].endswith("_parallel"), f"{name}: parallel=True only on batch drivers"
