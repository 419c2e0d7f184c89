"""``sweepnet train CONFIG --flow``: one training run as a Prefect flow, tracked in MLflow like a sweep's trial.

The config becomes a sweep of one trial (no space, the config's own seed; each ``--set KEY=VALUE`` a one-value
axis, ``--set model.seed=N`` the seed), written to ``STORE/train-flows/NAME.yaml`` and run by
``app.sweeps.run_specs``: the same Prefect flow (prepare, gradient check, one chunk on Dask, summary), the same
MLflow layout (experiment ``NAME-train``, a parent run and one child with params, per-epoch metrics, learning
curve, scoring history, weights, config, the feature picture for images and the MLflow model, registered as
``models:/NAME-train@champion``), and the same links into the MLflow UI's training view.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


def train_spec(config: str, overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """The one-trial sweep for ``config`` with ``overrides`` (``(dotted key, value)`` pairs)."""
    from pipeline.config import load_config

    cfg = load_config(config, dict(overrides))  # refuses a bad config or override before any service starts
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", f"{cfg.name}-train")
    spec: dict[str, Any] = {"name": name, "base": str(Path(config).resolve()), "log_model": "all"}
    space = {key: [value] for key, value in overrides if key != "model.seed"}
    seeds = [value for key, value in overrides if key == "model.seed"]
    if space:
        spec["space"] = space
    if seeds:
        spec["seeds"] = [int(seeds[-1])]
    return spec


def run_train_flow(config: str, overrides: list[tuple[str, Any]], store: Path, verbose: bool = False) -> int:
    """Write the one-trial sweep into the store and run it; the exit code of ``sweepnet sweep``."""
    from app.sweeps import run_specs

    spec = train_spec(config, overrides)
    folder = store / "train-flows"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return run_specs([str(path)], store=store, n_workers=1, verbose=verbose)
