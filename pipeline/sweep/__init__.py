"""Hyperparameter x initialisation sweeps: spec, deterministic expansion, chunk runner, summary.

Plain Python (no Prefect): ``flows/sweep.py`` wires these steps into a flow that fans chunks out
over Dask. Typical order::

    plan = driver.prepare("examples/sweeps/xor_census.yaml", store_dir=".sweepnet")
    for chunk in driver.pending_chunks(plan):          # a Prefect task per chunk in the flow
        collector.add(runner.run_chunk(chunk, plan.ctx, plan.options))
    collect.finish(plan, collector.rows())
"""

from pipeline.sweep.expand import Trial, trial_key
from pipeline.sweep.spec import SweepSpec, load_sweep

__all__ = ["SweepSpec", "Trial", "load_sweep", "trial_key"]
