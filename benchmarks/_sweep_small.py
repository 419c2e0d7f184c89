"""Part 3 of ``bench_sweep.py``: a small sweep's fixed cost (issue 15), cold, warm and per command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]


SMALL_SPEC = ROOT / "examples" / "sweeps" / "digits_small.yaml"
SMALL_TARGETS = {"warm": 10.0, "cold": 20.0}
PHASES = ("start", "prepare", "fanout", "summary", "rest", "stop")


def _user_env() -> dict:
    """A user's shell: no service exported, keeping on (the default), a short idle stop in case we crash."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "SWEEPNET_DASK_ADDRESS", "MLFLOW_TRACKING_URI", "SWEEPNET_KEEP_SERVICES")}
    env.update(PYTHONPATH=str(ROOT), SWEEPNET_SERVICES_IDLE_S="300", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def small_run(folder: Path, store: Path, name: str, *extra: str) -> dict:
    """One ``sweepnet sweep`` of the small grid (renamed ``name``: a new experiment, nothing skipped)."""
    spec = yaml.safe_load(SMALL_SPEC.read_text())
    spec["name"] = name
    path, out = folder / f"{name}.yaml", folder / f"{name}.json"
    path.write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "app", "sweep", str(path), "--store", str(store), "--summary-json", str(out), *extra]
    kept_before = _kept_cpu(store)
    own_before = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_user_env(), cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    kept_after = _kept_cpu(store)
    # CPU seconds of every process that worked for this sweep: the command and what it waited for (its
    # LocalCluster, a per-command server), plus the kept services (alive before, after, or both)
    cpu = _children_cpu() - own_before + sum(kept_after.get(k, 0.0) - kept_before.get(k, 0.0) for k in kept_after)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"small sweep {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    r = json.loads(out.read_text())
    t, svc = r["timing"], r["timing"]["services"]
    phases = {"start": svc["start_s"], "prepare": t["prepare_s"], "fanout": t["fanout_s"],
              "summary": t["summary_s"], "stop": svc["stop_s"]}
    phases["rest"] = wall - sum(phases.values())  # interpreter start, imports, flow run bookkeeping, cluster
    best = r.get("best") or {}
    return {"wall_s": wall, "cpu_s": cpu, "phases": phases, "reused": svc["reused"], "kept": svc["kept"],
            "trials_finished": r["trials_finished"], "best_objective": best.get("objective")}


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _kept_cpu(store: Path) -> dict:
    """CPU seconds so far of each process kept under ``store/services`` and its descendants, by (pid, start)."""
    from app.services import service_status

    out = {}
    for row in service_status(store / "services"):
        try:
            root = psutil.Process(row["pid"])
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                out[(p.pid, p.create_time())] = t.user + t.system
        except psutil.Error:
            continue
    return out


def small_sweep(repeats: int) -> dict:
    """Per command (before), cold (kept services started) and ``repeats`` warm runs, then ``services down``."""
    from app.services import service_status

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # untimed: compiles and caches what a fresh checkout compiles once (Numba kernels, the MLflow store template)
        small_run(folder, folder / "warmup", "digits-small-warmup", "--no-keep-services")
        out = {"per_command": small_run(folder, folder / "per-command", "digits-small-per-command",
                                        "--no-keep-services")}
        store = folder / "store"
        try:
            out["cold"] = small_run(folder, store, "digits-small-cold")
            out["warm"] = [small_run(folder, store, f"digits-small-warm-{i}") for i in range(repeats)]
        finally:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "app", "services", "down", "--state-dir", str(store / "services")],
                           env=_user_env(), cwd=ROOT, capture_output=True, text=True)
            out["down_s"] = time.perf_counter() - t0
            out["left_running"] = [r["name"] for r in service_status(store / "services") if r["alive"]]
    return out


def report_small(res: dict) -> str:
    """Table: each run's phases and wall against the target (warm: the median of the repeats)."""
    warm = sorted(res["warm"], key=lambda r: r["wall_s"])
    median = warm[len(warm) // 2]
    rows = [("per command (`--no-keep-services`, before issue 15)", res["per_command"], None),
            ("cold: nothing running, fresh store (starts the kept services)", res["cold"], SMALL_TARGETS["cold"]),
            (f"warm: services kept running (median of {len(warm)})", median, SMALL_TARGETS["warm"])]
    lines = ["12-model digits grid (examples/sweeps/digits_small.yaml: hidden [10]/[50] x l1 0/1e-4 x 3 seeds, "
             "10 epochs, h2o defaults, 1347 training rows) with `sweepnet sweep`, seconds:", "",
             "| run | services start | prepare | fan-out | summary | rest | stop | end to end | target | met "
             "| CPU s, all processes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r, target in rows:
        met = "" if target is None else ("yes" if r["wall_s"] <= target else "no")
        lines.append(f"| {label} | " + " | ".join(f"{r['phases'][k]:.1f}" for k in PHASES)
                     + f" | {r['wall_s']:.1f} | {'' if target is None else f'≤ {target:.0f}'} | {met} "
                     f"| {r['cpu_s']:.1f} |")
    walls = ", ".join(f"{r['wall_s']:.1f}" for r in res["warm"])
    lines += ["", f"Warm walls: {walls} s; best objective "
              f"(train_logloss) {res['cold']['best_objective']:.4f}; `sweepnet services down` afterwards "
              f"{res['down_s']:.1f} s, left running: {res['left_running'] or 'nothing'}. "
              "\"rest\" = interpreter start, imports, the flow run's bookkeeping and (per command) the LocalCluster. "
              "CPU s: user + system seconds of the command, what it waited for and the kept services during the "
              "run (on 2 cores a wall below CPU s / 2 is impossible; under load the wall grows, this does not much). "
              "H2O 3.46 on the same 12 models (issue 15's figure, not measured here): 6 s of `grid.train()` "
              "+ ~5 s JVM start."]
    return "\n".join(lines)


def finish_small(results: dict, out: str) -> int:
    results["load_avg_at_end"] = os.getloadavg()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).with_name("bench_sweep_small.json").write_text(json.dumps(results, indent=2, default=str))
    print(report_small(results["small"]))
    print(f"\nload average start/end: {results['load_avg_at_start']} / {results['load_avg_at_end']}")
    return 0

