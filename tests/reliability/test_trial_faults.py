"""Bad trials inside a sweep: one that diverges, one that raises, one whose allocation numpy refuses. Each must
become one FAILED child carrying the reason while the rest of the sweep goes on. (A trial that really grows its
memory until the worker is killed is in test_chunk_faults.py.)"""

from __future__ import annotations

import copy
import sqlite3

import pytest

from tests.reliability import helpers as h
from tests.reliability.faulty import FAULT_SEED, MESSAGE

pytestmark = [pytest.mark.reliability, pytest.mark.services]

OK = {**h.XOR["model"], "epochs": 3000}
BAD_TRIALS = {
    # model axis -> (what is injected, the words the FAILED child's error must contain)
    "ok": (OK, None),
    "diverges": ({**OK, "rate": 1.0e6}, "diverged"),
    "allocation refused": ({**OK, "hidden": [10**11]}, "MemoryError"),  # 1.5 TiB of weights: numpy refuses
    "raises": ({**OK, "seed": FAULT_SEED}, MESSAGE),
    "ok after failures": ({**OK, "seed": 2}, None),
}


@pytest.mark.timeout(300)
def test_bad_trials_become_failed_children_and_the_sweep_goes_on(tmp_path, rel_prefect, rel_dask, request):
    """Diverging (rate 1e6), raising (injected RuntimeError) and refused-allocation (hidden=[1e11]) trials each
    give one FAILED child with the reason; the trials around them finish."""
    raw = {"name": "bad-trials", "base": {**h.XOR, "model": OK}, "chunk_size": 1,
           "objective": {"metric": "train_MSE"}, "space": {"model": [m for m, _ in BAD_TRIALS.values()]}}
    spec = h.write_spec(tmp_path, raw)
    store = tmp_path / "store"
    proc = h.flow_sweep(spec, store, h.clean_env(PREFECT_API_URL=rel_prefect), "--dask-address", rel_dask,
                        "--train-fn", "tests.reliability.faulty:train", label="bad-trials")
    code = proc.wait(timeout=280)
    assert code == 3, f"exit {code} (want 3: finished with failed trials)\n{proc.stderr[-3000:]}"
    ctx = h.sweep_ctx(h.sqlite_uri(store), "bad-trials")
    seen = h.census(ctx)
    by_index = {int(r.data.tags["sweepnet.index"]): r for runs in seen["by_key"].values() for r in runs}
    assert sorted(by_index) == list(range(len(BAD_TRIALS))), "one child per trial"
    reasons = {}
    for i, (label, (_, words)) in enumerate(BAD_TRIALS.items()):
        run = by_index[i]
        want = "FINISHED" if words is None else "FAILED"
        assert run.info.status == want, f"{label}: {run.info.status} {run.data.tags.get('sweepnet.error', '')[-2000:]}"
        if words is not None:
            error = run.data.tags.get("sweepnet.error", "")
            assert words in error, f"{label}: error tag {error[:300]!r} lacks {words!r}"
            reasons[label] = error.splitlines()[0][:160]
    assert seen["orphans"] == 0 and seen["duplicates"] == 0
    parent = h.tracking.client(ctx.tracking_uri).get_run(ctx.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 3
    h.record(request.node.name, injected="trial 1: rate=1e6; trial 2: hidden=[1e11]; trial 3: RuntimeError "
             "from the trial function", trials=len(BAD_TRIALS), finished=len(BAD_TRIALS) - 3, failed_children=3,
             duplicates=seen["duplicates"], orphans=seen["orphans"], exit_code=code, reasons=reasons,
             sweep_s=round(proc.elapsed, 1))


def _diverging_first(tmp_path) -> dict:
    model = {**h.XOR["model"], "epochs": 3000}
    return {"name": "diverging-first", "base": {**h.XOR, "model": model}, "chunk_size": 1,
            "objective": {"metric": "train_MSE"}, "space": {"model.rate": [1.0e6, 0.05]}}


@pytest.mark.timeout(120)
def test_a_diverging_first_trial_does_not_stop_the_sweep(tmp_path):
    """The probe that sizes chunks must not turn the first trial's failure into a failed sweep."""
    from pipeline.sweep import driver

    store = tmp_path / "store"
    plan = driver.prepare(copy.deepcopy(_diverging_first(tmp_path)), store_dir=store,
                          tracking_uri=h.sqlite_uri(store), n_workers=2)
    assert len(plan.trials) == 2


@pytest.mark.timeout(120)
def test_refused_sweep_writes_nothing_to_mlflow(tmp_path, rel_prefect, rel_dask, request):
    """A sweep over a truncated Parquet file is refused before fan-out (exit 2), naming the file; the
    MLflow store holds no run afterwards."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"a": rng.normal(size=64), "b": rng.normal(size=64), "y": rng.normal(size=64)}), data)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    raw = {"name": "refused", "base": {"name": "t", "data": {"source": str(data), "target": "y"},
                                       "model": {**h.XOR["model"], "epochs": 10}},
           "seeds": [1, 2], "objective": {"metric": "train_MSE"}}
    spec = h.write_spec(tmp_path, raw)
    store = tmp_path / "store"
    proc = h.cli_sweep(spec, store, h.clean_env(PREFECT_API_URL=rel_prefect), "--dask-address", rel_dask,
                       label="refused")
    code = proc.wait(timeout=110)
    assert code == 2, f"exit {code}; stderr:\n{proc.stderr[-3000:]}"
    assert "refused" in proc.stderr and str(data) in proc.stderr and "truncated or corrupt" in proc.stderr
    db = store / "mlflow.db"
    runs = 0
    if db.exists():
        with sqlite3.connect(db) as con:
            runs = con.execute("select count(*) from runs").fetchone()[0]
    assert runs == 0
    h.record(request.node.name, injected="base data = a Parquet file cut to half its size", exit_code=code,
             mlflow_runs=runs, message=h.failure_line(proc.stderr, "sweep refused:")[:300],
             refuse_s=round(proc.elapsed, 1))
