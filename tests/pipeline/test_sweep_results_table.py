"""Per-chunk result tables of ``child_per: config`` sweeps (pipeline.sweep.results_table) on a real sqlite MLflow
store: one table per chunk, re-executed chunks not counted twice, configuration children from the tables
logged off the drain loop, a failed child reported without killing the sweep, resume from the new and the old
(``seeds.csv``) layout."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from pipeline import model_logging, tracking
from pipeline.sweep import collect, driver, results_table, runner
from tests.pipeline.test_sweep_run import sweep


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("tablestore")


def census(name):
    return sweep(name, child_per="config", seeds=3, chunk_size=4)


def run(plan, chunks=None):
    chunks = driver.pending_chunks(plan) if chunks is None else chunks
    col = collect.Collector(plan, chunks, every=0)
    for c in chunks:
        col.add(runner.run_chunk(c, plan.ctx, plan.options))
    return col, chunks


def table_files(ctx) -> list[str]:
    c = tracking.client(tracking.uri_for(ctx))
    out, todo = [], [results_table.FOLDER]
    while todo:
        for f in c.list_artifacts(ctx.parent_run_id, todo.pop()):
            (todo.append(f.path) if f.is_dir else out.append(f.path))
    return sorted(out)


def test_each_chunk_writes_one_table_with_its_rows_and_a_rerun_chunk_overwrites_it(store):
    plan = driver.prepare(census("t1"), store, n_workers=2)
    chunks = driver.pending_chunks(plan)
    outcomes = runner.run_chunk(chunks[0], plan.ctx, plan.options)
    path = results_table.chunk_path(outcomes)
    assert table_files(plan.ctx) == [path] and {o.table for o in outcomes} == {path}
    rows = results_table.read_tables(plan.ctx)
    assert sorted(rows) == sorted(o.key for o in outcomes)
    for o in outcomes:
        r = rows[o.key]
        assert (r["config_key"], r["index"], r["seed"], r["rung"], r["status"]) == \
            (o.config_key, o.index, o.seed, o.rung, o.status)
        assert r["metrics"] == o.metrics and r["pid"] == o.pid and r["ended"] == o.ended
        assert (math.isnan(o.objective) and math.isnan(r["objective"])) or r["objective"] == o.objective
    assert set(results_table.COLUMNS) <= set(results_table.to_table(outcomes).column_names)
    assert "m_train_MSE" in results_table.to_table(outcomes).column_names
    # Dask re-executes the chunk (its first result lived on a dead worker): same file, one row per key
    again = runner.run_chunk(chunks[0], plan.ctx, plan.options)
    assert table_files(plan.ctx) == [path]
    rows = results_table.read_tables(plan.ctx)
    assert len(rows) == len(chunks[0]) and all(rows[o.key]["ended"] == o.ended for o in again)
    col, _ = run(plan, chunks)
    col.rows()
    assert len(table_files(plan.ctx)) == len(chunks)


def test_readers_keep_the_latest_row_of_a_key_found_in_two_tables(store):
    plan = driver.prepare(census("t-dup"), store, n_workers=2)
    chunk = driver.pending_chunks(plan)[0]
    first = runner.run_chunk(chunk, plan.ctx, plan.options)
    later = runner.run_chunk(chunk[:2], plan.ctx, plan.options)  # another composition: another file
    assert len(table_files(plan.ctx)) == 2
    rows = results_table.read_tables(plan.ctx)
    assert len(rows) == len(first) and {rows[o.key]["table"] for o in later} == {later[0].table}


def test_configuration_children_come_from_the_chunks_with_the_aggregates_over_seeds(store, tmp_path):
    plan = driver.prepare(census("t2"), store, n_workers=2)
    col, _ = run(plan)
    rows = col.rows()
    res = collect.finish(plan, rows, tmp_path)
    assert res["logging_errors"] == [] and res["trials"] == 12
    kids = {r.data.tags[tracking.TAG_CONFIG]: r for r in tracking.children(plan.ctx)}
    assert len(kids) == 4 and not any("seeds.csv" == a.path for r in kids.values()
                                      for a in tracking.client(plan.ctx.tracking_uri).list_artifacts(r.info.run_id))
    for ck, run_ in kids.items():
        mine = [r for r in rows if r["config_key"] == ck]
        assert {r["run_id"] for r in mine} == {run_.info.run_id}
        ok = sorted(r["objective"] for r in mine if r["status"] == "finished")
        m = run_.data.metrics
        assert m["n_seeds"] == 3 and m["n_failed"] == 3 - len(ok)
        if ok:
            assert (m["train_MSE"], m["train_MSE_min"], m["train_MSE_max"]) == (ok[len(ok) // 2], ok[0], ok[-1])
            assert m["train_MSE_mean"] == pytest.approx(sum(ok) / len(ok))
        assert run_.data.tags[results_table.TAG_LAYOUT] == results_table.LAYOUT
    # a rerun reads the stored rows from the tables: same results, nothing trained
    rerun = driver.prepare(census("t2"), store, n_workers=2)
    left = driver.pending_chunks(rerun)
    stored = collect.stored_rows(rerun)
    assert {k for k, v in stored.items() if v["status"] == "cached"} == \
        {r["key"] for r in rows if r["status"] == "finished"}
    for r in rows:
        if r["status"] == "finished":
            assert stored[r["key"]]["objective"] == r["objective"] and stored[r["key"]]["run_id"] == r["run_id"]
    col2, _ = run(rerun, left)
    res2 = collect.finish(rerun, col2.rows(), tmp_path / "again")
    assert res2["trials_finished"] == res["trials_finished"] and res2["best"]["objective"] == res["best"]["objective"]


def test_a_failed_worker_upload_is_written_by_the_driver(store):
    plan = driver.prepare(census("t3"), store, n_workers=2)
    chunk = driver.pending_chunks(plan)[0]
    gone = tracking.TrackingContext(plan.ctx.tracking_uri, plan.ctx.experiment_id, "0" * 32)  # no such run
    with pytest.warns(RuntimeWarning, match="could not upload the result table"):
        outcomes = runner.run_chunk(chunk, gone, plan.options)
    assert all(o.table is None for o in outcomes) and table_files(plan.ctx) == []
    col = collect.Collector(plan, [chunk], every=0)
    col.add(outcomes)
    assert col.flush() == []
    assert table_files(plan.ctx) == [results_table.chunk_path(outcomes)]


def test_a_configuration_child_that_cannot_be_logged_is_reported_and_the_sweep_closes(store, tmp_path,
                                                                                     monkeypatch, capsys):
    plan = driver.prepare(census("t4"), store, n_workers=2)
    broken = plan.trials[0].config_key
    real = collect.log_config_child

    def log_or_fail(plan_, trials, outcomes):
        if trials[0].config_key == broken:
            raise ConnectionError("tracking server gone for a moment")
        return real(plan_, trials, outcomes)

    monkeypatch.setattr(collect, "log_config_child", log_or_fail)
    col, _ = run(plan)
    res = collect.finish(plan, col.rows(), tmp_path)
    assert len(res["logging_errors"]) == 1 and broken in res["logging_errors"][0]
    assert "ConnectionError: tracking server gone" in res["logging_errors"][0]
    assert "not logged" in capsys.readouterr().err
    parent = tracking.client(plan.ctx.tracking_uri).get_run(plan.ctx.parent_run_id)
    assert parent.info.status == "FINISHED" and broken in parent.data.tags["sweepnet.logging_errors"]
    assert len(tracking.children(plan.ctx)) == 3
    monkeypatch.setattr(collect, "log_config_child", real)
    rerun = driver.prepare(census("t4"), store, n_workers=2)
    assert {t.config_key for c in driver.pending_chunks(rerun) for t in c} >= {broken}  # logged next time
    col2, _ = run(rerun)
    res2 = collect.finish(rerun, col2.rows(), tmp_path / "again")
    assert res2["logging_errors"] == [] and broken in {r.data.tags[tracking.TAG_CONFIG]
                                                       for r in tracking.children(rerun.ctx)}


def _log_old_layout(plan, outcomes):
    """Configuration children as sweepnet logged them before the chunk tables: per-seed ``seeds.csv``, no tables."""
    by_config = {}
    for t in plan.trials:
        by_config.setdefault(t.config_key, []).append(t)
    for ck, trials in by_config.items():
        outs = [outcomes[t.key] for t in trials]
        ok = [o.objective for o in outs if o.status == "finished"]
        tags = {tracking.TAG_CONFIG: ck, tracking.TAG_KIND: "config", "sweepnet.rung": 0}
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "seeds.csv").write_text(collect.seeds_csv(outs))
            tracking.log_child(plan.ctx, driver.config_child_key(plan, ck), ck, trials[0].config, tags, [],
                               {"n_seeds": len(outs)}, tmp, status="FINISHED" if ok else "FAILED",
                               datasets=[model_logging.dataset_input(trials[0].config.get("data"),
                                                                     trials[0].data_digest)])


def test_resume_reads_stores_of_the_older_seeds_csv_layout(store, tmp_path):
    plan = driver.prepare(census("t5"), store, n_workers=2)
    outcomes = {o.key: o for c in driver.pending_chunks(plan) for o in runner.run_chunk(c, None, plan.options)}
    _log_old_layout(plan, outcomes)
    assert table_files(plan.ctx) == []
    rerun = driver.prepare(census("t5"), store, n_workers=2)
    left = driver.pending_chunks(rerun)
    assert sum(map(len, left)) == sum(o.status == "failed" for o in outcomes.values())  # all-failed configs
    col, _ = run(rerun, left)
    rows = col.rows()
    for r in rows:
        o = outcomes[r["key"]]
        if o.status == "finished":
            assert r["status"] == "cached" and r["objective"] == pytest.approx(o.objective)
            assert r["metrics"]["train_MSE"] == pytest.approx(o.metrics["train_MSE"])
    res = collect.finish(rerun, rows, tmp_path)
    assert res["trials_finished"] == sum(o.status == "finished" for o in outcomes.values())


def test_rows_no_table_could_hold_go_in_the_childs_seeds_csv(store, tmp_path, monkeypatch):
    plan = driver.prepare(census("t6"), store, n_workers=2)
    chunks = driver.pending_chunks(plan)
    gone = tracking.TrackingContext(plan.ctx.tracking_uri, plan.ctx.experiment_id, "0" * 32)
    with pytest.warns(RuntimeWarning):
        outcomes = [runner.run_chunk(c, gone, plan.options) for c in chunks]  # every worker upload fails

    def refused(ctx, outs):
        raise PermissionError("artifact store refused the upload")

    monkeypatch.setattr(results_table, "write_chunk", refused)  # and the driver's too
    col = collect.Collector(plan, chunks, every=0)
    for o in outcomes:
        col.add(o)
    res = collect.finish(plan, col.rows(), tmp_path)
    assert len(res["logging_errors"]) == len(chunks) and "PermissionError" in res["logging_errors"][0]
    kids = tracking.children(plan.ctx)
    assert len(kids) == 4 and not any(results_table.TAG_LAYOUT in r.data.tags for r in kids)
    c = tracking.client(plan.ctx.tracking_uri)
    assert all("seeds.csv" in {a.path for a in c.list_artifacts(r.info.run_id)} for r in kids)
    monkeypatch.undo()
    rerun = driver.prepare(census("t6"), store, n_workers=2)
    stored = collect.stored_rows(rerun)
    driver.release_lease(rerun)
    finished = {o.key: o for out in outcomes for o in out if o.status == "finished"}
    assert finished and all(stored[k]["objective"] == pytest.approx(o.objective) for k, o in finished.items())
