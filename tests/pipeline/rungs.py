"""Run a sweep plan's rungs (or search waves) in this process, the way the flow does, without Dask or Prefect."""

from __future__ import annotations

from pipeline.sweep import collect, driver, runner


def run_rungs(plan) -> tuple:
    """Every rung's chunks run here in order; (the last plan, the rows of every rung)."""
    rows: list[dict] = []
    while plan is not None:
        chunks = driver.pending_chunks(plan)
        col = collect.Collector(plan, chunks, every=0)
        for c in chunks:
            col.add(runner.run_chunk(c, plan.ctx, plan.options))
        rung_rows = col.rows()
        rows += rung_rows
        last, plan = plan, driver.next_rung(plan, rung_rows)
    return last, rows
