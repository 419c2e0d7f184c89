"""Prefect flows over the pipeline, fanned out over Dask; the cluster plumbing (``flows.cluster``).

No argparse here: the ``sweepnet`` command (``app``) parses argv and calls these in-process.
"""

from flows.deploy import deploy
from flows.features import features_flow, run_features_flow
from flows.sweep import run_sweep, scheduled_sweep, sweep_flow

__all__ = [
    "deploy",
    "features_flow",
    "run_features_flow",
    "run_sweep",
    "scheduled_sweep",
    "sweep_flow",
]
