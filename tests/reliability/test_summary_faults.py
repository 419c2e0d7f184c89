"""What the summary of a disturbed sweep reports, reproduced deterministically in one process (the same
driver, runner and collector functions the flow calls, on a sqlite store): a chunk that Dask executes a
second time because the worker holding its result died, and a sweep resumed after its flow was killed."""

from __future__ import annotations

import io

import pytest

from pipeline.sweep import collect, driver, runner, summary
from tests.reliability import helpers as h

pytestmark = [pytest.mark.reliability]

SPEC = {**h.FAULT_SPEC, "name": "summary", "seeds": [1, 2],
        "base": {**h.XOR, "model": {**h.XOR["model"], "epochs": 3000}}}


def _plan(store):
    return driver.prepare(dict(SPEC), store_dir=store, tracking_uri=h.sqlite_uri(store), n_workers=1,
                          check_gradient=False)


def _table(plan, rows) -> list[dict]:
    header, body = summary.leaderboard_table(rows, plan.spec, plan.axes)
    return [{k: str(v) for k, v in zip(header, line) if k != "run_id"} for line in body]


def _run(plan, chunks) -> list[list[dict]]:
    return [runner.run_chunk(c, plan.ctx, plan.options) for c in chunks]


@pytest.mark.timeout(180)
def test_a_reexecuted_chunk_keeps_its_trials_metrics_in_the_summary(tmp_path):
    """A chunk run twice (Dask recomputing a result lost with its worker) still reports the trial's
    metrics in the summary, not NaN."""
    plan = _plan(tmp_path / "store")
    chunks = driver.pending_chunks(plan)
    first = _run(plan, chunks)
    again = runner.run_chunk(chunks[0], plan.ctx, plan.options)  # Dask recomputing a lost result
    collector = collect.Collector(plan, chunks, stream=io.StringIO())
    for outcomes in [again, *first[1:]]:
        collector.add(outcomes)
    rows = {r["key"]: r for r in collector.rows()}
    key = chunks[0][0].key
    assert rows[key]["objective"] == first[0][0].objective, rows[key]


@pytest.mark.timeout(240)
def test_a_resumed_sweep_summary_equals_an_undisturbed_one(tmp_path):
    """Two chunks run, then the sweep is prepared again and only the missing trials run: its leaderboard
    equals an undisturbed run's ('cached' counted as 'finished')."""
    full = _plan(tmp_path / "full")
    chunks = driver.pending_chunks(full)
    collector = collect.Collector(full, chunks, stream=io.StringIO())
    for outcomes in _run(full, chunks):
        collector.add(outcomes)
    undisturbed = _table(full, collector.rows())

    first = _plan(tmp_path / "resumed")
    _run(first, driver.pending_chunks(first)[:2])  # the flow dies after two chunks
    again = _plan(tmp_path / "resumed")            # the same command, rerun
    pending = driver.pending_chunks(again)
    assert sum(map(len, pending)) == len(again.trials) - 2, "the rerun must run only the missing trials"
    collector = collect.Collector(again, pending, stream=io.StringIO())
    for outcomes in _run(again, pending):
        collector.add(outcomes)
    diffs = h.summary_diffs(_table(again, collector.rows()), undisturbed)
    assert not diffs, diffs
