"""Halving with and without checkpoint continuation on examples/sweeps/xor_random.yaml (issue 16).

The example's sweep (12 configurations x 2 seeds, rungs 200 / 1000 / 4000 epochs, keep 0.34) runs twice, each
in its own process with its own sqlite MLflow store: ``halving.continue: true`` (promoted trials go on from
their previous rung's checkpoint) and ``false`` (every rung retrains from epoch 0). Chunks run one after
another in that process (one worker, no Dask/Prefect), so the figures compare the work, not the scheduling.
Reported per mode: trials, epochs trained, epochs a straight run of every trial would train, summed trial
training seconds and, apart, the checkpoint fetches (MLflow lookup + download per continued trial), the
fan-out wall (every rung, MLflow logging included) and the best objective. Targets: continuation saves exactly the promoted trials' earlier-rung epochs, and it changes no
result (continued trials are bit-identical to straight runs: the same best objective and weights).

    .venv/bin/python benchmarks/bench_continuation.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "sweeps" / "xor_random.yaml"


def one_mode(keep_going: bool, store: str) -> dict:
    """Run the example sweep in this process; return its figures."""
    from pipeline import tracking
    from pipeline.sweep import collect, continuation, driver, runner

    fetched = {"s": 0.0, "n": 0}
    fetch = continuation.fetch

    def timed_fetch(ctx, key):  # the checkpoint download is part of a trial's seconds: time it apart
        t = time.perf_counter()
        try:
            return fetch(ctx, key)
        finally:
            fetched["s"] += time.perf_counter() - t
            fetched["n"] += 1
    continuation.fetch = timed_fetch

    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["base"] = str((EXAMPLE.parent / raw["base"]).resolve())
    raw["halving"] = {**raw["halving"], "continue": keep_going}
    plan = driver.prepare(raw, store, n_workers=1, check_gradient=False)
    rows, compute, fanout, rung_trials = [], 0.0, 0.0, []
    while plan is not None:
        t0 = time.perf_counter()
        chunks = driver.pending_chunks(plan)
        col = collect.Collector(plan, chunks, every=0)
        for c in chunks:
            col.add(runner.run_chunk(c, plan.ctx, plan.options))
        fanout += time.perf_counter() - t0
        compute += sum(o.seconds for o in col.outcomes.values())
        rung_rows = col.rows()
        rows += rung_rows
        rung_trials.append(len(rung_rows))
        last, plan = plan, driver.next_rung(plan, rung_rows)
    res = collect.finish(last, rows, None)
    best = res["best"]
    weights = ""
    if best and best.get("run_id"):
        from pipeline.model import DeepLearningModel

        with tempfile.TemporaryDirectory() as tmp:
            local = tracking.client(tracking.uri_for(last.ctx)).download_artifacts(best["run_id"], "model/weights.npz", tmp)
            weights = DeepLearningModel.load(local).params_.tobytes().hex()
    straight = sum(float(r["metrics"].get("epochs_run", 0)) for r in rows)
    return {"trials": rung_trials, "epochs_straight": straight,
            "epochs_trained": res.get("epochs_trained_total", straight),
            "saved": res.get("continuation_epochs_saved", 0.0), "compute_s": compute - fetched["s"],
            "fetch_s": fetched["s"], "fetches": fetched["n"], "fanout_s": fanout,
            "best_objective": best["objective"] if best else None, "best_key": best["key"] if best else None,
            "best_weights": weights, "expected_saved": _expected(rows)}


def _expected(rows: list[dict]) -> float:
    """Epochs continuation should save: for each trial of a later rung, its previous rung's epochs."""
    rungs = yaml.safe_load(EXAMPLE.read_text())["halving"]["rungs"]
    return float(sum(rungs[r["rung"] - 1] for r in rows if r["rung"] > 0 and r["status"] in ("finished", "cached")))


def run_mode(keep_going: bool) -> dict:
    with tempfile.TemporaryDirectory() as store:
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); import benchmarks.bench_continuation as b; "
                f"print('RESULT ' + json.dumps(b.one_mode({keep_going!r}, {store!r})))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=3600)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"mode continue={keep_going} failed:\n{out.stderr[-3000:]}")
        return json.loads(line[len("RESULT "):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode (the fastest is reported)")
    args = parser.parse_args()
    runs = {True: [], False: []}
    for _ in range(args.repeats):
        for mode in (False, True):
            runs[mode].append(run_mode(mode))
    best = {mode: min(rs, key=lambda r: r["fanout_s"]) for mode, rs in runs.items()}
    from benchmarks.common import markdown_table

    rows = [[f"continue: {str(m).lower()}", " / ".join(map(str, r["trials"])), f"{r['epochs_trained']:,.0f}",
             f"{r['epochs_straight']:,.0f}", f"{r['compute_s']:.2f}",
             f"{r['fetch_s']:.2f} ({r['fetches']})", f"{r['fanout_s']:.1f}",
             f"{r['best_objective']:.4g}"] for m, r in ((False, best[False]), (True, best[True]))]
    print(f"`{EXAMPLE.relative_to(ROOT)}`, one process, sqlite MLflow, fastest of {args.repeats} run(s) per mode.\n")
    print(markdown_table(["mode", "trials per rung", "epochs trained", "epochs (straight runs)",
                          "training s", "checkpoint fetch s (n)", "fan-out wall s", "best objective"], rows))
    on, off = best[True], best[False]
    same = on["best_key"] == off["best_key"] and on["best_weights"] == off["best_weights"] != ""
    print()
    print(markdown_table(["target", "measured", "met"], [
        ["continuation saves the promoted trials' earlier-rung epochs",
         f"{on['saved']:,.0f} epochs saved of {on['epochs_straight']:,.0f} ({on['saved'] / on['epochs_straight']:.0%}); "
         f"expected {on['expected_saved']:,.0f}", "yes" if on["saved"] == on["expected_saved"] > 0 else "no"],
        ["same result as retraining (best trial and its weights bit-identical)",
         f"best {on['best_objective']:.4g} vs {off['best_objective']:.4g}", "yes" if same else "no"],
        ["training seconds fall with the epochs saved (fetches excluded)",
         f"{on['compute_s']:.2f} s vs {off['compute_s']:.2f} s "
         f"({on['compute_s'] / off['compute_s']:.0%})", "yes" if on["compute_s"] < off["compute_s"] else "no"],
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
