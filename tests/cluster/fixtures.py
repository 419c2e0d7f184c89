"""Fixtures of the multi-host tests, a plugin of ``tests/conftest.py`` (tests/cluster and tests/reliability use
them): the installed package (built once per session), the namespace hosts and the stack on them (once per
module: a fault test may break its own stack beyond repair)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from app.services import procs
from tests.cluster.netns import TestNet, available
from tests.cluster.stack import (PY, ROOT, Stack, build_installed, env, services_up, start_dask,
                                 start_prefect_worker)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """sweepnet as a worker host has it: a wheel installed into a folder, kernels compiled there."""
    return build_installed(tmp_path_factory.mktemp("installed"))


@pytest.fixture(scope="module")
def hosts():
    ok, why = available()
    if not ok:
        pytest.fail(f"the multi-host tests need network namespaces: {why}")
    with TestNet(f"sn{os.getpid() % 100000}", ["svc", "sched", "w1", "w2", "drv"]) as net:
        yield net


@pytest.fixture(scope="module")
def stack(request, hosts, installed):
    """The five-host stack; a module sets ``DASK_CONFIG = {...}`` for the scheduler and workers' settings."""
    # PostgreSQL runs as the `postgres` user, which must be able to traverse the state folder's parents
    root = Path(tempfile.mkdtemp(prefix="sweepnet-hosts-", dir="/tmp"))
    root.chmod(0o711)
    st = Stack(hosts, root, installed)
    try:
        st.exports = services_up(st, st.state)
        start_dask(st, **getattr(request.module, "DASK_CONFIG", {}))
        start_prefect_worker(st)
        yield st
    finally:
        for rec in reversed(st.records):
            procs.stop(rec, timeout=10)
        subprocess.run([PY, "-m", "app", "services", "down", "--state-dir", str(st.state)],
                       env=env(PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, timeout=180)
        shutil.rmtree(root, ignore_errors=True)
