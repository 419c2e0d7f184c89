"""Sweep orchestration benchmarks (results go to BENCHMARKS.md).

1. Overhead and parallel efficiency: XOR trials calibrated to ~2 s each, chunk_size auto, on an embedded
   LocalCluster of 2 single-threaded workers, at two sweep sizes (16 and 256 trials by default).
   Per size and for three walls -- the fan-out, the flow (prepare + fan-out + summary: the issue's "flow
   wall time") and the whole process (Python start, imports, LocalCluster, Prefect flow run) --
   overhead/trial = (wall - sum(trial s) / 2) / N and efficiency = sum(trial s) / (2 * wall). Between the
   sizes: the marginal overhead of one more trial (slope) and the fixed cost per sweep (intercept).
   Against the plain baseline (``_plain_baseline``: the same trials on 2 multiprocessing processes, no
   Prefect/Dask/MLflow, in the same run): efficiency = baseline wall / sweep wall and overhead per trial =
   (sweep wall - baseline wall) x 2 workers / N. Targets (fan-out wall): >= 90 % and <= 50 ms per trial.
   Then the 100-model digits grid: worker time per trial, training vs tracking (target tracking <= 50 ms).
2. The lab's census: 10,000 XOR trials of 10,000 epochs end to end with tracking (``child_per: config``),
   target <= 60 s on 2 workers: wall time, where it goes (prepare / fan-out / summary / trial compute), peak RSS
   of the driver (which hosts the Dask scheduler) and of the workers, and the driver's RSS over the run (flat
   or growing). ``--census-large 100000`` adds the 100,000-trial run (target <= 10 min, RSS flat); it takes
   ~10 minutes, so ``make bench`` leaves it out.

3. A small sweep's fixed cost (issue 15, ``--part small``): examples/sweeps/digits_small.yaml (12 digits
   models, 10 epochs) end to end with ``sweepnet sweep`` on its defaults, cold (no services running, fresh
   store: the first sweep starts the kept Prefect server and Dask workers), warm (the services already
   running) and, for comparison, per command (``--no-keep-services``: start and stop them per command, the
   behaviour before issue 15); each phase timed (services start, prepare, fan-out, summary, the rest, stop).
   Targets: <= 10 s warm, <= 20 s cold.

Parts 1 and 2 share one Prefect server started for them (as ``sweepnet sweep`` does) and stopped at the end;
part 3 runs ``sweepnet sweep`` as a user does, with nothing exported, and stops what it kept.

    .venv/bin/python benchmarks/bench_sweep.py                # every part
    .venv/bin/python benchmarks/bench_sweep.py --part overhead --trials 16,256
    .venv/bin/python benchmarks/bench_sweep.py --part census --census-trials 2000
    .venv/bin/python benchmarks/bench_sweep.py --part small --small-repeats 3
    .venv/bin/python benchmarks/bench_sweep.py --part census --census-large 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sweep_small import finish_small, report_small, small_sweep  # noqa: E402  (part 3, its own module)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# regression_stop -1: trials calibrated by epochs must run them all (h2o's default stops a solved XOR early)
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 1000, "distribution": "gaussian",
                 "standardize": False, "regression_stop": -1}}


class TreeMonitor:
    """Samples the RSS of a process and its children every ``every`` seconds (peak per role, series)."""

    def __init__(self, proc: subprocess.Popen, every: float = 0.5):
        self.root, self.every = psutil.Process(proc.pid), every
        self.peak = {"driver": 0, "worker": 0, "total": 0}
        self.driver_series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                driver = self.root.memory_info().rss
                kids = [p.memory_info().rss for p in self.root.children(recursive=True)
                        if "spawn_main" in " ".join(p.cmdline())]
            except psutil.Error:
                break
            self.peak["driver"] = max(self.peak["driver"], driver)
            self.peak["worker"] = max([self.peak["worker"], *kids])
            self.peak["total"] = max(self.peak["total"], driver + sum(kids))
            self.driver_series.append((time.perf_counter() - self._t0, driver))
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {k: round(v / 2**20, 1) for k, v in self.peak.items()}


def run_flow(spec: dict, folder: Path, env: dict, workers: int = 2) -> dict:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = folder / f"{spec['name']}.json"
    cmd = [sys.executable, "-m", "app", "sweep", str(path), "--store", str(folder / "store"), "--workers",
           str(workers), "--summary-json", str(out), "--no-gradcheck"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mon = TreeMonitor(proc)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    mem = mon.stop()
    if not out.exists():
        raise RuntimeError(f"flow failed (exit {proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.read_text())
    series = [mb for _, mb in mon.driver_series]
    result.update(process_wall_s=wall, peak_rss_mb=mem, exit_code=proc.returncode,
                  driver_rss_mb_quartiles=[round(series[int(q * (len(series) - 1))] / 2**20, 1)
                                           for q in (0.25, 0.5, 0.75, 1.0)] if series else [])
    return result


def calibrate_epochs(target_s: float) -> int:
    """Epochs for a ~``target_s`` XOR trial (best of 3), after compiling every kernel the sweeps will load
    (so no sweep below pays a cold Numba compile in its prepare step)."""
    from pipeline.train import run_training
    from pipeline.warmup import warm

    epochs = 20000
    warm({**XOR, "model": {**XOR["model"], "epochs": epochs}})
    for _ in range(2):  # a short run first, then one of about the target length (fixed costs differ)
        cfg = {**XOR, "model": {**XOR["model"], "epochs": epochs}}
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            run_training(cfg)
            best = min(best, time.perf_counter() - t0)
        epochs = int(epochs * target_s / best)
    return epochs


SCOPES = ("fanout", "flow", "process")  # fan-out only; the flow (prepare + fan-out + summary); the whole process


def overhead(folder: Path, env: dict, sizes: list[int], trial_s: float, grid: bool = True) -> dict:
    """Per size: the sweep, and the plain baseline (``_plain_baseline``: the same trials on 2 plain processes) in
    the same run. efficiency = baseline wall / sweep wall; overhead per trial = (sweep wall - baseline wall) *
    workers / N (worker-seconds per trial), for the fan-out wall and the flow wall (prepare + fan-out + summary).
    Then the 100-model digits grid's worker time per trial (training vs tracking) from the flow's timing."""
    from _plain_baseline import run_baseline

    epochs = calibrate_epochs(trial_s)
    runs = []
    for n_trials in sizes:
        spec = {"name": f"bench-overhead-{n_trials}", "base": {**XOR, "model": {**XOR["model"], "epochs": epochs}},
                "seeds": n_trials, "objective": {"metric": "train_MSE"}}  # chunk_size auto
        base = run_baseline(spec, workers=2)
        r = run_flow(spec, folder, env)
        t, n = r["timing"], r["trials"]
        half = t["trial_compute_s"] / 2
        walls = {"fanout": t["fanout_s"], "flow": t["prepare_s"] + t["fanout_s"] + t["summary_s"],
                 "process": r["process_wall_s"]}
        r.update(epochs=epochs, mean_trial_s=t["trial_compute_s"] / n, walls=walls, baseline=base,
                 mean_baseline_trial_s=base["trial_sum_s"] / n,
                 extra_s={k: w - half for k, w in walls.items()},
                 overhead_ms_per_trial={k: 1000 * (w - half) / n for k, w in walls.items()},
                 efficiency={k: half / w for k, w in walls.items()},
                 vs_baseline={k: {"efficiency": base["wall_s"] / walls[k],
                                  "overhead_ms_per_trial": 1000 * (walls[k] - base["wall_s"]) * 2 / n}
                              for k in ("fanout", "flow")})
        runs.append(r)
    out = {"runs": runs}
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        dn = b["trials"] - a["trials"]
        out["marginal_ms_per_trial"] = {k: 1000 * (b["extra_s"][k] - a["extra_s"][k]) / dn for k in SCOPES}
        out["fixed_s"] = {k: a["extra_s"][k] - a["trials"] * out["marginal_ms_per_trial"][k] / 1000 for k in SCOPES}
    if grid:
        out["grid"] = digits_grid(folder, env)
    return out


#: The issue's 100-model grid: hidden [10]/[50] x l1 0/1e-4 x 25 seeds, 10 epochs, h2o defaults otherwise,
#: the first 1347 digits rows train (a fifth of them held out to rank on).
GRID = {"name": "bench-grid-100", "seeds": 25, "objective": {"metric": "valid_accuracy", "direction": "maximize"},
        "base": {"name": "digits", "data": {"source": "digits", "train_rows": 1347}, "model": {"epochs": 10}},
        "space": {"model.hidden": [[10], [50]], "model.l1": [0.0, 1.0e-4], "data.valid_fraction": [0.2]}}


def digits_grid(folder: Path, env: dict) -> dict:
    """Worker time per trial of the 100-model grid: training vs tracking (lookups, marks, the child run and its
    files: ``TrialOutcome.log_seconds``), and the rest of the fan-out's worker-seconds (Prefect, Dask, idle)."""
    r = run_flow(GRID, folder, env)
    t, n = r["timing"], r["trials"]
    r.update(compute_ms_per_trial=1000 * t["trial_compute_s"] / n, logging_ms_per_trial=1000 * t["trial_logging_s"] / n,
             other_ms_per_trial=1000 * (2 * t["fanout_s"] - t["trial_compute_s"] - t["trial_logging_s"]) / n)
    return r


def census(folder: Path, env: dict, n_trials: int, epochs: int) -> dict:
    """The lab's census: XOR hidden [2]/[3]/[4] x initial_weight_scale 0.01/0.1/1 x seeds, ``epochs`` each (the
    lab's 10,000), one MLflow child per configuration, end to end on 2 workers."""
    seeds = -(-n_trials // 9)
    spec = {"name": f"bench-census-{n_trials}", "base": {**XOR, "model": {**XOR["model"], "epochs": epochs,
                                                                          "initial_weight_distribution": "Normal"}},
            "seeds": seeds, "child_per": "config", "objective": {"metric": "train_MSE"},
            "census": {"metric": "train_MSE", "solved_below": 0.05},
            "space": {"model.hidden": [[2], [3], [4]], "model.initial_weight_scale": [0.01, 0.1, 1.0]}}
    r = run_flow(spec, folder, env)
    r.update(epochs=epochs, requested=n_trials)
    return r


def _baseline_lines(o: dict) -> list[str]:
    """Rows of one size against the plain baseline: efficiency = baseline wall / sweep wall, overhead per trial =
    (sweep wall - baseline wall) x 2 workers / N; targets ≥ 90 % and ≤ 50 ms on the fan-out wall."""
    b, v, n = o["baseline"], o["vs_baseline"], o["trials"]
    eff, ms = v["fanout"]["efficiency"], v["fanout"]["overhead_ms_per_trial"]
    return [f"| {n} trials: plain baseline (the same trials on 2 multiprocessing processes, no Prefect/Dask/MLflow) "
            f"wall / its mean trial | {b['wall_s']:.1f} s / {b['trial_sum_s'] / n:.2f} s |",
            f"| {n} trials vs the baseline: efficiency = baseline wall / sweep wall, fan-out / flow | "
            f"{100 * eff:.0f} % / {100 * v['flow']['efficiency']:.0f} % (target fan-out ≥ 90 %: "
            f"{'met' if eff >= 0.9 else 'not met'}) |",
            f"| {n} trials vs the baseline: overhead per trial = (sweep wall − baseline wall) × 2 / N, fan-out / flow | "
            f"{ms:.0f} ms / {v['flow']['overhead_ms_per_trial']:.0f} ms (target fan-out ≤ 50 ms: "
            f"{'met' if ms <= 50 else 'not met'}) |"]


#: Census sizes with an end-to-end target (seconds, on 2 workers), from issue 15.
CENSUS_GOALS = {10_000: 60.0, 100_000: 600.0}


def report(results: dict) -> str:
    lines = ["| benchmark | result |", "|---|---|"]
    if "overhead" in results:
        for o in results["overhead"]["runs"]:
            t, ms, eff = o["timing"], o["overhead_ms_per_trial"], o["efficiency"]
            lines += [f"| {o['trials']} XOR trials of {o['mean_trial_s']:.2f} s on 2 workers, {t['chunks']} chunks of "
                      f"≤ {t['chunk_size']}: overhead per trial, fan-out / flow / process | "
                      + " / ".join(f"{ms[k]:.0f} ms" for k in SCOPES) + " |",
                      f"| {o['trials']} trials: parallel efficiency, fan-out / flow / process | "
                      + " / ".join(f"{100 * eff[k]:.0f} %" for k in SCOPES) + " |",
                      f"| {o['trials']} trials: trial compute sum / prepare / fan-out / summary / process wall | "
                      f"{t['trial_compute_s']:.1f} s / {t['prepare_s']:.1f} s / {t['fanout_s']:.1f} s / "
                      f"{t['summary_s']:.1f} s / {o['process_wall_s']:.1f} s |",
                      f"| {o['trials']} trials: the fan-out's worker-seconds: training / logging (MLflow child + "
                      f"artifacts) / the rest (Prefect, Dask, idle) | {t['trial_compute_s']:.1f} s / "
                      f"{t['trial_logging_s']:.1f} s ({1000 * t['trial_logging_s'] / o['trials']:.0f} ms a trial) / "
                      f"{2 * t['fanout_s'] - t['trial_compute_s'] - t['trial_logging_s']:.1f} s |"]
            lines += _baseline_lines(o)
        o = results["overhead"]
        if "marginal_ms_per_trial" in o:
            lines += ["| marginal overhead of one more trial (slope between the sizes), fan-out / flow / process | "
                      + " / ".join(f"{o['marginal_ms_per_trial'][k]:.0f} ms" for k in SCOPES) + " |",
                      "| fixed overhead per sweep (intercept), fan-out / flow / process | "
                      + " / ".join(f"{o['fixed_s'][k]:.1f} s" for k in SCOPES) + " |"]
        if "grid" in o:
            g = o["grid"]
            lines += [f"| {g['trials']}-model digits grid (hidden [10]/[50] x l1 0/1e-4 x 25 seeds, 10 epochs): worker "
                      f"time per trial, training / tracking (lookups, marks, child run, files) / the rest (Prefect, "
                      f"Dask, idle) | {g['compute_ms_per_trial']:.0f} ms / {g['logging_ms_per_trial']:.0f} ms / "
                      f"{g['other_ms_per_trial']:.0f} ms (target tracking ≤ 50 ms: "
                      f"{'met' if g['logging_ms_per_trial'] <= 50 else 'not met'}) |",
                      f"| {g['trials']}-model digits grid: end to end (Prefect server already running; fresh store and "
                      f"LocalCluster) / prepare / fan-out / summary | {g['process_wall_s']:.1f} s / "
                      f"{g['timing']['prepare_s']:.1f} s / {g['timing']['fanout_s']:.1f} s / "
                      f"{g['timing']['summary_s']:.1f} s (target ≤ 15 s: "
                      f"{'met' if g['process_wall_s'] <= 15 else 'not met'}) |"]
    if "census" in results:
        for c in results["census"]:
            t = c["timing"]
            goal = CENSUS_GOALS.get(c.get("requested"))
            met = "" if goal is None else f" (target ≤ {goal:.0f} s: {'met' if c['process_wall_s'] <= goal else 'not met'})"
            lines += [f"| census: {c['trials']} XOR trials ({c['epochs']} epochs), child_per config, "
                      f"{t['chunks']} chunks of {t['chunk_size']}, 2 workers | {c['process_wall_s']:.0f} s end to end{met} |",
                      f"| census {c['trials']}: prepare (expand + validate + warm) / fan-out / summary | "
                      f"{t['prepare_s']:.1f} s / {t['fanout_s']:.1f} s / {t['summary_s']:.1f} s |",
                      f"| census {c['trials']}: trial compute sum (2 workers) | {t['trial_compute_s']:.1f} s "
                      f"({1000 * t['trial_compute_s'] / c['trials']:.1f} ms a trial) |",
                      f"| census {c['trials']}: peak RSS driver+scheduler / one worker / all | {c['peak_rss_mb']['driver']} / "
                      f"{c['peak_rss_mb']['worker']} / {c['peak_rss_mb']['total']} MB |",
                      f"| census {c['trials']}: driver RSS at 25/50/75/100 % of the run | {c['driver_rss_mb_quartiles']} MB |"]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["overhead", "census", "small", "all"], default="all")
    p.add_argument("--small-repeats", type=int, default=3, help="warm runs of the small sweep")
    p.add_argument("--trials", default="16,256", help="comma-separated sweep sizes for the overhead part")
    p.add_argument("--trial-seconds", type=float, default=2.0)
    p.add_argument("--census-trials", type=int, default=10_000)
    p.add_argument("--census-large", type=int, default=0, metavar="N",
                   help="also run an N-trial census (e.g. 100000: ~10 min, so not part of `make bench`)")
    p.add_argument("--census-epochs", type=int, default=10_000, help="epochs a census trial (the lab's 10,000)")
    p.add_argument("--no-grid", action="store_true", help="overhead part without the 100-model digits grid")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_sweep.json"))
    a = p.parse_args()
    from app.services import start_prefect, stop_services

    results: dict = {"cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    if a.part in ("small", "all"):  # first, with nothing else of this benchmark running
        results["small"] = small_sweep(a.small_repeats)
    if a.part == "small":
        return finish_small(results, a.out)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        info = start_prefect(folder / "prefect", worker=False, ui=False)
        results["prefect_server_start_s"] = time.perf_counter() - t0
        env = {**os.environ, "PREFECT_API_URL": info["api_url"], "PREFECT_HOME": str(folder / "prefect" / "prefect"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
               "DASK_LOGGING__DISTRIBUTED": "warning", "MLFLOW_LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        try:
            if a.part in ("overhead", "all"):
                results["overhead"] = overhead(folder, env, [int(v) for v in a.trials.split(",")], a.trial_seconds,
                                               grid=not a.no_grid)
            if a.part in ("census", "all"):
                sizes = [a.census_trials] + ([a.census_large] if a.census_large else [])
                results["census"] = [census(folder, env, n, a.census_epochs) for n in sizes]
        finally:
            stop_services(folder / "prefect")
    results["load_avg_at_end"] = os.getloadavg()
    for r in [*results.get("overhead", {}).get("runs", []), results.get("overhead", {}).get("grid"),
              *results.get("census", [])]:
        if r:
            r.pop("leaderboard_md", None)
            r.pop("census_md", None)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2, default=str))
    print(report(results))
    if "small" in results:
        print("\n" + report_small(results["small"]))
    print(f"\nload average start/end: {results['load_avg_at_start']} / {results['load_avg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
