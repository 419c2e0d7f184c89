"""Hyperparameter x initialisation sweeps: spec, deterministic expansion, chunk runner, summary.

Plain Python (no Prefect): ``flows/sweep.py`` wires these steps into a flow that fans chunks out
over Dask. Typical order::

    plan = driver.prepare("examples/sweeps/xor_census.yaml", store_dir=".sweepnet")
    for chunk in driver.pending_chunks(plan):          # a Prefect task per chunk in the flow
        collector.add(runner.run_chunk(chunk, plan.ctx, plan.options))
    collect.finish(plan, collector.rows())

The steps are the submodules ``driver``, ``runner``, ``collect`` and ``summary`` (import them as
modules); the names below are the types and entry points they share.
"""

from pipeline.sweep.expand import Trial
from pipeline.sweep.expand import trial_key
from pipeline.sweep.outcome import TrialOutcome
from pipeline.sweep.spec import SweepSpec
from pipeline.sweep.spec import load_sweep

__all__ = [
    "SweepSpec",
    "Trial",
    "TrialOutcome",
    "load_sweep",
    "trial_key",
]
