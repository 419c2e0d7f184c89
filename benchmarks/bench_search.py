"""Adaptive search benchmarks (issue 16; the section of BENCHMARKS.md that benchmarks/run_all.py writes).

1. Search quality, in-process: the digits network over a 5-axis space (hidden sizes, l1, l2, input dropout,
   Adam's rate), ``--budget`` trials per search, ``--reps`` repetitions with different search seeds. TPE and
   random search run through the same driver-side scheduler the flow drives
   (``pipeline.sweep.optuna_search.OptunaScheduler``; study in memory) and the real ``run_training``, one
   trial at a time in this process (whole sweeps through Prefect per trial would dominate the time).
   Selection by validation accuracy; the selected configuration's test accuracy is reported beside it.
   Figure: trials TPE needs to reach random search's best-of-budget validation accuracy, over the budget
   (median over reps; goal <= 1/3).
2. ASHA vs synchronous halving, real sweeps (``sweepnet sweep`` on an embedded LocalCluster of 2 workers,
   one Prefect server): the same configurations, trials of unequal length (hidden 16 vs 512 units),
   rungs of epochs; fan-out wall of each, and the best validation accuracy (goal: ASHA <= 60 % of sync's
   wall at the same best accuracy).
3. Orchestration overhead per trial, real sweeps of short XOR trials: Optuna (random sampler) vs a grid of
   the same size; overhead/trial = (fan-out wall - sum of trial seconds / 2) / N (goal: within 10 ms).

    .venv/bin/python benchmarks/bench_search.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIGITS = {"name": "digits", "data": {"source": "digits", "train_rows": 1347, "valid_fraction": 0.2},
          "model": {"activation": "RectifierWithDropout", "hidden": [64], "input_dropout_ratio": 0.1, "l1": 1e-5,
                    "l2": 0.0, "epochs": 8, "mini_batch_size": 32, "optimizer": "adam", "rate": 0.001, "seed": 1}}
SPACE = {"model.hidden": [[16], [32], [64], [128], [64, 32]],
         "model.l1": {"loguniform": [1e-7, 1e-2]}, "model.l2": {"loguniform": [1e-7, 1e-2]},
         "model.input_dropout_ratio": {"uniform": [0.0, 0.5]}, "model.rate": {"loguniform": [1e-5, 1e-1]}}


def quality_spec(sampler: str, seed: int, budget: int):
    from pipeline.sweep import load_sweep

    return load_sweep({"name": f"q-{sampler}-{seed}", "base": DIGITS, "seeds": [1], "space": SPACE,
                       "objective": {"metric": "valid_accuracy", "direction": "maximize"},
                       "strategy": {"kind": "Optuna", "sampler": sampler, "n_trials": budget, "seed": seed}})


def search(sampler: str, seed: int, budget: int) -> list[tuple[float, float]]:
    """(validation, test) accuracy of each trial in the order the scheduler asked them."""
    import optuna

    from pipeline.sweep import expand as ex
    from pipeline.sweep.optuna_search import OptunaScheduler, make_sampler
    from pipeline.train import run_training

    spec = quality_spec(sampler, seed, budget)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    digests: dict[str, str] = {}

    def digest(data: dict) -> str:
        if "d" not in digests:
            digests["d"] = ex.default_digest(data)
        return digests["d"]

    def make(point, number):
        return ex.expand(spec, digest=digest, points=[point])

    sched, out = OptunaScheduler(study, spec, make, slots=1), []
    todo = sched.initial()
    while todo:
        rows = []
        for t in todo:
            try:
                m = run_training(t.config).metrics
                value, test, status = m["valid_accuracy"], m["test_accuracy"], "finished"
            except Exception:  # noqa: BLE001 - a diverged trial counts as failed, as in a sweep
                value, test, status = math.nan, math.nan, "failed"
            out.append((value, test))
            rows.append({"key": t.key, "status": status, "objective": value})
        todo = sched.on_results(rows)
    return out


def trials_to_reach(values: list[float], target: float) -> int:
    best = -math.inf
    for i, v in enumerate(values, 1):
        best = max(best, v if math.isfinite(v) else -math.inf)
        if best >= target:
            return i
    return len(values) + 1  # never reached within the budget


def quality(budget: int, reps: int) -> dict:
    runs = []
    for rep in range(reps):
        t0 = time.perf_counter()
        # distinct seeds: TPE starts with random draws (n_startup_trials), which the same seed would copy
        rnd, tpe = search("random", 100 + rep, budget), search("tpe", 200 + rep, budget)
        target = max(v for v, _ in rnd if math.isfinite(v))
        best_r, best_t = (max((x for x in s if math.isfinite(x[0])), key=lambda x: x[0]) for s in (rnd, tpe))
        runs.append({"seed": 100 + rep, "random_best_valid": target, "random_best_test": best_r[1],
                     "tpe_best_valid": best_t[0], "tpe_best_test": best_t[1],
                     "tpe_trials_to_random_best": trials_to_reach([v for v, _ in tpe], target),
                     "seconds": time.perf_counter() - t0})
    share = statistics.median(r["tpe_trials_to_random_best"] for r in runs) / budget
    return {"budget": budget, "reps": reps, "runs": runs, "median_share": share}


def halving_spec(mode: str, n_configs: int, rungs: list[int]) -> dict:
    return {"name": f"halving-{mode}", "base": DIGITS, "seeds": [1], "chunk_size": 1,
            "objective": {"metric": "valid_accuracy", "direction": "maximize"},
            "strategy": {"kind": "RandomDiscrete", "max_models": n_configs, "seed": 4},
            "space": {"model.hidden": [[16], [512]], "model.rate": {"loguniform": [1e-4, 1e-2]}},
            "halving": {"rungs": rungs, "keep": 0.34, "mode": mode}, "log_model": "none"}


def halving(folder: Path, env: dict, n_configs: int, rungs: list[int]) -> dict:
    from benchmarks.bench_sweep import run_flow

    out = {}
    for mode in ("sync", "async"):
        r = run_flow(halving_spec(mode, n_configs, rungs), folder, env)
        out[mode] = {"fanout_s": r["timing"]["fanout_s"], "best_valid": (r.get("best") or {}).get("objective"),
                     "trials": r["trials"], "compute_s": r["timing"]["trial_compute_s"]}
    out["ratio"] = out["async"]["fanout_s"] / out["sync"]["fanout_s"]
    return out


def overhead(folder: Path, env: dict, n: int, epochs: int) -> dict:
    from benchmarks.bench_sweep import XOR, run_flow

    base = {**XOR, "model": {**XOR["model"], "epochs": epochs}}
    rates = [round(0.01 + 0.01 * i, 3) for i in range(n)]
    grid = {"name": "ovh-grid", "base": base, "space": {"model.rate": rates}, "log_model": "none",
            "objective": {"metric": "train_MSE"}}
    # a continuous range over the grid's span: a random draw from the grid's own values would repeat some, and
    # a repeated configuration is answered from the store, not trained
    opt = {**grid, "name": "ovh-optuna", "space": {"model.rate": {"uniform": [rates[0], rates[-1]]}},
           "strategy": {"kind": "Optuna", "sampler": "random", "n_trials": n}}
    out = {}
    for name, spec in (("grid", grid), ("optuna", opt)):
        r = run_flow(spec, folder, env)
        t = r["timing"]
        out[name] = {"fanout_s": t["fanout_s"], "trial_s": t["trial_compute_s"], "chunks": t["chunks"],
                     "per_trial_ms": 1000 * (t["fanout_s"] - t["trial_compute_s"] / 2) / n}
    out["difference_ms"] = out["optuna"]["per_trial_ms"] - out["grid"]["per_trial_ms"]
    return out


def report(res: dict) -> str:
    lines, figures = [], []
    q = res.get("quality")
    if q:
        lines += [f"**Search quality** (in-process, the flow's Optuna scheduler, real training; budget {q['budget']} "
                  f"trials, {q['reps']} search seeds; validation accuracy selects, test reported):", "",
                  "| search seed | random best valid (test) | TPE best valid (test) | TPE trials to random's best |",
                  "|---|---|---|---|"]
        lines += [f"| {r['seed']} | {r['random_best_valid']:.4f} ({r['random_best_test']:.4f}) | "
                  f"{r['tpe_best_valid']:.4f} ({r['tpe_best_test']:.4f}) | {r['tpe_trials_to_random_best']} |"
                  for r in q["runs"]]
        met = "met" if q["median_share"] <= 1 / 3 else "not met"
        figures.append(f"| TPE trials to random's best-of-{q['budget']} (in-process), median share of the budget | "
                       f"{q['median_share']:.2f} | <= 0.33 | {met} |")
    h = res.get("halving")
    if h:
        met = "met" if h["ratio"] <= 0.6 else "not met"
        figures.append(f"| ASHA / sync halving fan-out wall (real sweeps, 2 workers; {h['sync']['fanout_s']:.1f} s "
                       f"sync, {h['async']['fanout_s']:.1f} s async; best valid {h['sync']['best_valid']:.4f} vs "
                       f"{h['async']['best_valid']:.4f}) | {h['ratio']:.2f} | <= 0.60 | {met} |")
    o = res.get("overhead")
    if o:
        met = "met" if o["difference_ms"] <= 10 else "not met"
        figures.append(f"| orchestration overhead per trial, Optuna - grid (real sweeps; {o['optuna']['per_trial_ms']:.0f} "
                       f"ms in {o['optuna']['chunks']} tasks vs {o['grid']['per_trial_ms']:.0f} ms in "
                       f"{o['grid']['chunks']} tasks) | {o['difference_ms']:.0f} ms | <= 10 ms | {met} |")
    return "\n".join(lines + ["", "| figure | measured | target | |", "|---|---|---|---|"] + figures)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small budget and reps (a smoke check, not the record)")
    p.add_argument("--part", choices=["quality", "halving", "overhead", "all"], default="all")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_search.json"))
    a = p.parse_args()
    budget, reps = (12, 2) if a.quick else (30, 5)
    res: dict = {"load_avg_at_start": os.getloadavg()}
    if a.part in ("quality", "all"):
        res["quality"] = quality(budget, reps)
    if a.part in ("halving", "overhead", "all"):
        from app.services import start_prefect, stop_services

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            info = start_prefect(folder / "prefect", worker=False, ui=False)
            env = {**os.environ, "PREFECT_API_URL": info["api_url"], "PREFECT_HOME": str(folder / "prefect" / "prefect"),
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                   "DASK_LOGGING__DISTRIBUTED": "warning", "PYTHONPATH": str(ROOT)}
            try:
                if a.part in ("halving", "all"):
                    res["halving"] = halving(folder, env, 6 if a.quick else 9, [2, 6] if a.quick else [3, 9, 27])
                if a.part in ("overhead", "all"):
                    res["overhead"] = overhead(folder, env, 8 if a.quick else 24, 300)
            finally:
                stop_services(folder / "prefect")
    res["load_avg_at_end"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2, default=str))
    print(report(res))
    print(f"\nload average start/end: {res['load_avg_at_start']} / {res['load_avg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
