"""Fixtures of the fault tests: one Prefect server and one Dask cluster for the session (tests that kill
processes start their own), the undisturbed reference run, and an outcome line per test in the log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.reliability import helpers as h
from tests.services import prefect_server_url, sweepnet_service_pool  # noqa: F401  (session fixtures)


@pytest.fixture(scope="session")
def rel_prefect(prefect_server_url) -> str:
    """``PREFECT_API_URL`` of the session's real ``prefect server`` (shared with tests/infra; no test here
    kills it: the Prefect-loss test starts its own)."""
    return prefect_server_url


def worker_env(api: str, **extra: str) -> dict[str, str]:
    """What Dask workers of these tests need: the Prefect server, the repo importable (tests.reliability)."""
    return {"PREFECT_API_URL": api, "PYTHONPATH": str(h.ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING", "MPLBACKEND": "Agg", **extra}


@pytest.fixture(scope="session")
def rel_dask(tmp_path_factory, rel_prefect) -> str:
    """A scheduler + 2 single-threaded workers that no test kills."""
    from app.services import start_dask, stop_services

    state = tmp_path_factory.mktemp("rel-dask")
    info = start_dask(state, n_workers=2, dashboard=False, env=worker_env(rel_prefect))
    yield info["address"]
    stop_services(state)


@pytest.fixture
def own_dask(tmp_path, rel_prefect):
    """Start a private cluster (``start(n_workers, memory_limit, **env)`` -> (address, state_dir)) that a
    test may kill."""
    from app.services import start_dask, stop_services

    started: list[Path] = []

    def start(n_workers: int = 2, memory_limit: str | None = None, **extra: str) -> tuple[str, Path]:
        state = tmp_path / f"dask-{len(started)}"
        started.append(state)
        info = start_dask(state, n_workers=n_workers, dashboard=False, env=worker_env(rel_prefect, **extra),
                          memory_limit=memory_limit)
        return info["address"], state

    yield start
    for state in started:
        stop_services(state)


@pytest.fixture(scope="session")
def reference(tmp_path_factory, rel_prefect, rel_dask) -> dict:
    """The undisturbed run of ``FAULT_SPEC``: trial keys, per-trial digests, leaderboard, seconds."""
    folder = tmp_path_factory.mktemp("reference")
    spec = h.write_spec(folder, h.FAULT_SPEC)
    store = folder / "store"
    proc = h.cli_sweep(spec, store, h.clean_env(PREFECT_API_URL=rel_prefect), "--dask-address", rel_dask,
                       "--no-gradcheck", label="reference")
    assert proc.wait(timeout=600) == 0, proc.stderr[-3000:]
    ctx = h.sweep_ctx(h.sqlite_uri(store), h.FAULT_SPEC["name"])
    seen = h.census(ctx)
    assert seen["finished_once"] == h.N_FAULT_TRIALS and seen["orphans"] == 0
    return {"keys": seen["keys"], "digests": h.digests(ctx, folder / "dl"), "leaderboard": h.leaderboard(store),
            "seconds": proc.elapsed}


_SETUP_S = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """One outcome line per reliability test (passed / failed / xfailed / skipped) in the log."""
    outcome = yield
    rep = outcome.get_result()
    if item.get_closest_marker("reliability") is None:
        return
    if rep.when == "setup":  # module fixtures (a whole scenario) run in setup: count them too
        item.stash[_SETUP_S] = rep.duration
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        state = "xfailed" if hasattr(rep, "wasxfail") and rep.skipped else (
            "xpassed" if hasattr(rep, "wasxfail") else rep.outcome)
        doc = (item.function.__doc__ or "").strip().splitlines()
        line = {"run": h.RUN_ID, "test": item.name, "kind": "outcome", "outcome": state, "time": time.time(),
                "duration_s": round(rep.duration + (item.stash.get(_SETUP_S, 0.0) if rep.when == "call" else 0.0), 1), "module": item.module.__name__.rsplit(".", 1)[-1],
                "slow": item.get_closest_marker("slow") is not None, "doc": " ".join(d.strip() for d in doc),
                "xfail_reason": getattr(rep, "wasxfail", "")}
        h.RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(h.RESULTS, "a") as fh:
            fh.write(json.dumps(line) + "\n")
