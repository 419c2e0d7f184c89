"""Make the repository root importable and load the shared service fixtures for tests/infra.

Once tests/conftest.py declares ``pytest_plugins = ["tests.services"]`` this import is redundant
but harmless: the fixtures share one service pool per test process.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.services import *  # noqa: E402,F401,F403
