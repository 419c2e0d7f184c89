"""Scheduled sweeps: a cron deployment of ``flows.sweep:scheduled_sweep`` on a real Prefect server.

Schedules never fire on Prefect's ephemeral API, so ``PREFECT_API_URL`` must point at ``prefect server``.
Default: a deployment on a ``process`` work pool whose ``prefect worker`` runs each sweep
(``sweepnet services up --only prefect`` starts both). ``--serve``: this process serves the schedule itself
(``flow.serve``); stopping it pauses the schedule.
"""

from __future__ import annotations

from pathlib import Path

from flows.sweep import scheduled_sweep
from pipeline.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]


def deploy(spec: str, cron: str, name: str | None = None, pool: str = "sweepnet-process",
           store: str = ".sweepnet", serve: bool = False) -> str:
    """Create (or update) the deployment; return its id. Parameters are absolute paths, because the
    worker runs the flow from the project directory, not from the caller's."""
    sweep = load_sweep(spec)  # refuse a bad spec before anything is registered
    params = {"spec": str(Path(spec).resolve()), "store_dir": str(Path(store).resolve())}
    name = name or sweep.name
    if serve:
        scheduled_sweep.serve(name=name, cron=cron, parameters=params)
        return name
    flow = scheduled_sweep.from_source(source=str(ROOT), entrypoint="flows/sweep.py:scheduled_sweep")
    return str(flow.deploy(name=name, work_pool_name=pool, cron=cron, parameters=params,
                           build=False, push=False, print_next_steps=False))
