"""A real sweep's store, its MLflow UI (``sweepnet ui``), a Prefect server with its UI, and Debian's chromium.

Once per module: a 4-trial digits sweep runs with ``python -m app sweep`` against a Prefect server started here
with its UI on (the session fixtures start theirs without), then ``python -m app ui`` serves the store; both
servers are stopped by PID. Playwright drives Debian's ``chromium`` (``playwright install`` downloads a browser
build, unreachable here); a missing chromium fails the tests with the command that installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from app.services import free_port, http_status, start_prefect, stop_services

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SWEEP = {"name": "ui-digits", "base": str(ROOT / "examples" / "digits.yaml"),
         "objective": {"metric": "valid_accuracy", "direction": "maximize"}, "seeds": 1,
         "space": {"model.activation": ["RectifierWithDropout", "TanhWithDropout"], "model.l1": [0.0, 1.0e-5],
                   "model.epochs": [3], "data.valid_fraction": [0.2]}}
N_CHILDREN = 4
SWEPT = ("model.activation", "model.l1")


@dataclass(frozen=True)
class UiSweep:
    """The sweep behind the browser tests: its summary, the links ``sweepnet ui`` printed, the servers."""

    summary: dict
    ui_base: str
    ui_links: dict[str, str]
    prefect_ui: str
    prefect_api: str
    child_ids: list[str]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS")}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg", PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    return env


def _child_ids(db: Path, parent: str) -> list[str]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select run_uuid from tags where key = 'mlflow.parentRunId' and value = ?", (parent,))
        return sorted(r[0] for r in rows)
    finally:
        con.close()


def _start_ui(store: Path, log: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """``python -m app ui`` on a free port; waits (bounded) for /health and returns the links it printed."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app", "ui", "--store", str(store), "--port", str(port)],
                            cwd=ROOT, env=_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while http_status(f"{base}/health") != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"sweepnet ui did not answer /health within 180 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    links = dict(re.findall(r"^  (\S+): (http\S+)$", log.read_text(), flags=re.M))
    return proc, base, links


@pytest.fixture(scope="module")
def ui_sweep(tmp_path_factory) -> UiSweep:
    tmp = tmp_path_factory.mktemp("ui-sweep")
    prefect = start_prefect(tmp / "services", worker=False, ui=True, timeout=240.0)
    ui = None
    try:
        spec = tmp / "ui-digits.yaml"
        spec.write_text(yaml.safe_dump(SWEEP))
        store, out = tmp / "store", tmp / "summary.json"
        run = subprocess.run([sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store), "--workers", "2",
                              "--summary-json", str(out)], cwd=ROOT, env=_env(PREFECT_API_URL=prefect["api_url"]),
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        summary = json.loads(out.read_text())
        ui, base, links = _start_ui(store, tmp / "ui.log")
        yield UiSweep(summary, base, links, prefect["api_url"].removesuffix("/api"), prefect["api_url"],
                      _child_ids(store / "mlflow.db", summary["parent_run_id"]))
    finally:
        if ui is not None:
            ui.terminate()  # sweepnet ui exec'd mlflow server: the same PID
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.kill()
                ui.wait(timeout=30)
        stop_services(tmp / "services")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser tests need Debian's chromium: run `make setup` as root, or "
                    "`sudo apt-get install -y chromium` (Playwright's own browser download is unreachable)")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)  # 2 shared cores: the first render of a page can take seconds
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
