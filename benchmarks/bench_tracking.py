"""Tracking at scale (issue 12): a sweep into a Postgres-backed MLflow with basic auth. Prints Markdown tables.

1. ``children``: children/s with one child per trial, ``mlflow server --app-name basic-auth --workers W`` (auth
   cache 60 s) on a local PostgreSQL, W x writer processes (each child = create + log_batch + terminate, as in
   bench_auth_cache), and the server's CPU ms per request (psutil on its process tree).
2. ``requests``: real small XOR sweeps with ``sweepnet sweep`` (``child_per: trial``, then ``child_per: config``
   with seeds) against the Postgres + auth server (pipeline user's credentials in MLFLOW_TRACKING_USERNAME/PASSWORD,
   Prefect server and 2 Dask workers of ``app.services``); the server's requests counted by endpoint from its
   uvicorn access log (``mlflow server`` writes one line per request to stdout by default, which ``app.services``
   sends to STATE/logs/mlflow-server.log). Two sizes per mode: per trial = the slope between them, so the sweep's
   fixed requests (parent, lookups, summary) are not spread over the trials.
3. ``recorded``: ``child_per: config`` censuses (200 configurations x 20 seeds and 50 x 100 by default; the issue's
   1000 x 20 with ``--shapes 1000x20``) against the same services (2 server workers by default) with the stub
   trial function ``benchmarks._stub_train:train`` (returns a fixed result at once: only recording is measured);
   recorded trials/s = trials / fan-out seconds (the sweep's summary JSON), and every trial's result is looked up
   in MLflow (``pipeline.sweep.collect.stored_rows``): the bench fails if any is missing.
4. ``memory``: driver memory per trial, no tracking: examples/sweeps/xor_census.yaml expanded
   (``pipeline.sweep.driver.validate``) at ~10^4 and ~10^5 trials, then synthetic outcomes fed through
   ``pipeline.sweep.collect.Collector`` (its ``child_per: config`` logging off); RSS growth per trial of each.

    python benchmarks/bench_tracking.py                                  # every part, defaults
    python benchmarks/bench_tracking.py --part children --server-workers 1,2,4 --writers 1,2,4 --children 40
    python benchmarks/bench_tracking.py --part requests --request-trials 8,32
    python benchmarks/bench_tracking.py --part recorded --shapes 1000x20   # issue 12's size
    python benchmarks/bench_tracking.py --part memory --memory-seeds 1111,11112
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from _mlflow_bench import auth_server, children_per_second, new_experiment  # noqa: E402

PARTS = ("children", "requests", "recorded", "memory")
STUB = "benchmarks._stub_train:train"
CENSUS = ROOT / "examples" / "sweeps" / "xor_census.yaml"
# regression_stop -1: every epoch runs (h2o's default stops a solved XOR early)
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 50, "distribution": "gaussian",
                 "standardize": False, "regression_stop": -1, "initial_weight_distribution": "Normal"}}
ACCESS = re.compile(r'"([A-Z]+) ([^ ?"]+)[^"]* HTTP/[\d.]+" (\d{3})')
ID = re.compile(r"^(?:[0-9a-f]{32}|m-[0-9a-f]{32}|\d+)$")


def endpoint(method: str, path: str) -> str:
    """``METHOD path`` with run/model/experiment ids as ``{id}`` and artifact paths as ``{path}``."""
    head, sep, _ = path.partition("/mlflow-artifacts/artifacts/")
    parts = ["{id}" if ID.match(p) else p for p in head.split("/")]
    return f"{method} {'/'.join(parts)}{sep + '{path}' if sep else ''}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


# ---------------------------------------------------------------- 1. children/s
def part_children(server_workers: list[int], writers: list[int], n_children: int) -> str:
    rows = []
    for w in server_workers:
        with auth_server(ttl=60, workers=w) as (state, info, user):
            exp_id = new_experiment(info["tracking_uri"], f"children-w{w}")
            for n in writers:
                r = children_per_second(state, info["tracking_uri"], user, exp_id, n_children, n)
                rows.append([w, n, r["children"], f"{r['per_s']:.1f}", f"{r['cpu_ms_per_request']:.1f}"])
    return ("One child per trial: `mlflow server --app-name basic-auth --workers W` (auth_cache_ttl_seconds 60) on "
            "PostgreSQL; each child = create run + log_batch (10 params, 50 metric steps) + terminate, as the "
            "pipeline user (3 requests).\n\n"
            + _table(["server workers", "writer processes", "children", "children/s", "server CPU ms per request"],
                     rows))


# ---------------------------------------------------------------- services for parts 2 and 3
@contextlib.contextmanager
def sweep_services(dask_workers: int = 2, mlflow_workers: int = 1):
    """PostgreSQL, MLflow with basic auth (pipeline user, ``mlflow_workers`` server workers, auth cache 60 s),
    Prefect and ``dask_workers`` Dask workers, on loopback."""
    from app.services import start_services, stop_services

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    base = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    base.chmod(0o711)  # PostgreSQL runs as its own user
    state = base / "state"
    try:
        svc = start_services(("dask", "mlflow", "prefect"), state_dir=state, backend="postgres", mlflow_auth=True,
                             dask_workers=dask_workers, prefect_ui=False, timeout=240,
                             mlflow_workers=mlflow_workers)
        os.environ.update({k: v for k, v in svc.env().items() if k.startswith("MLFLOW_TRACKING_")})
        yield state, svc, base
    finally:
        stop_services(state)
        shutil.rmtree(base, ignore_errors=True)


def run_sweep(spec: dict, folder: Path, svc, train_fn: str | None = None) -> dict:
    """``sweepnet sweep`` of ``spec`` on the services (output captured, not shown); its summary JSON + wall."""
    path, out = folder / f"{spec['name']}.yaml", folder / f"{spec['name']}.json"
    path.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "PREFECT_API", "SWEEPNET_", "DASK_DISTRIBUTED__COMM"))}
    env.update(svc.env(), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    cmd = [sys.executable, "-m", "app", "sweep", str(path), "--store", str(folder / "store"), "--dask-address",
           svc.dask_address, "--no-gradcheck", "--summary-json", str(out), *(["--train-fn", train_fn] if train_fn else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"sweep {spec['name']} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return {**json.loads(out.read_text()), "wall_s": wall}


def _xor_spec(name: str, n_trials: int, child_per: str) -> dict:
    """``n_trials`` XOR trials. ``child_per: trial``: hidden [2], [3], ... x 2 seeds (more configurations, the
    spec's defaults, log_model ``all``); ``config``: hidden [2]/[3] x seeds (more seeds per configuration)."""
    if child_per == "trial":
        hidden, seeds = [[w] for w in range(2, 2 + max(1, n_trials // 2))], [1, 2]
    else:
        hidden, seeds = [[2], [3]], list(range(1, max(1, n_trials // 2) + 1))
    return {"name": name, "base": XOR, "seeds": seeds, "child_per": child_per,
            "objective": {"metric": "train_MSE"}, "space": {"model.hidden": hidden}}


# ---------------------------------------------------------------- 2. requests per trial
def _requests(log: Path, offset: int) -> Counter:
    """Requests by ``METHOD path`` in the server's access log after byte ``offset``."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return Counter(endpoint(m.group(1), m.group(2)) for m in ACCESS.finditer(text))


def part_requests(services, sizes: list[int], top: int) -> str:
    state, svc, base = services
    log = state / "logs" / "mlflow-server.log"
    out = []
    for child_per in ("trial", "config"):
        counts = {}
        for n in sizes:
            offset = log.stat().st_size
            r = run_sweep(_xor_spec(f"requests-{child_per}-{n}", n, child_per), base, svc)
            time.sleep(1.0)  # the access lines of the last requests
            counts[r["trials"]] = _requests(log, offset)
        if not any(counts.values()):
            raise RuntimeError(f"no access line in {log}: has the MLflow server's uvicorn log format changed?")
        (n0, c0), (n1, c1) = min(counts.items()), max(counts.items())
        span = max(1, n1 - n0)
        rows = []
        for ep, _ in (c0 + c1).most_common(top):
            rows.append([f"`{ep}`", c0[ep], c1[ep], f"{(c1[ep] - c0[ep]) / span:.2f}"])
        t0, t1 = sum(c0.values()), sum(c1.values())
        rows.append(["**all**", t0, t1, f"**{(t1 - t0) / span:.2f}**"])
        shape = ("hidden [2], [3], ... x 2 seeds (log_model: all, the default below 5 seeds)"
                 if child_per == "trial" else "hidden [2]/[3] x seeds (log_model: best, the census default)")
        out.append(f"`child_per: {child_per}`, XOR 50 epochs, {shape}, {n0} and {n1} trials: requests to the "
                   f"server from all processes (driver and workers); per additional trial = ({n1}-trial count - "
                   f"{n0}-trial count) / {span}. Whole sweep per trial: {t0 / n0:.1f} at {n0} trials, "
                   f"{t1 / n1:.1f} at {n1}.\n\n"
                   + _table(["endpoint", f"{n0} trials", f"{n1} trials", "per additional trial"], rows))
    return "\n\n".join(out)


# ---------------------------------------------------------------- 3. recorded trials/s
def _census_spec(name: str, configs: int, seeds: int) -> dict:
    scales = [round(0.01 + 0.001 * i, 6) for i in range(configs)]
    return {"name": name, "base": XOR, "seeds": seeds, "child_per": "config",
            "objective": {"metric": "train_MSE", "direction": "minimize"},
            "census": {"metric": "train_MSE", "solved_below": 0.05},
            "space": {"model.initial_weight_scale": scales}}


def verify_recorded(spec: dict, summary: dict) -> int:
    """Every trial of ``spec`` has a finished result in MLflow under the sweep's parent; raises otherwise."""
    from types import SimpleNamespace

    from pipeline import tracking
    from pipeline.sweep import driver
    from pipeline.sweep.collect import stored_rows

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # a bar per table read: not the report's
    _, trials = driver.validate(spec, STUB)
    ctx = tracking.TrackingContext(summary["tracking_uri"], summary["experiment_id"], summary["parent_run_id"])
    plan = SimpleNamespace(ctx=ctx, spec=SimpleNamespace(objective=SimpleNamespace(metric="train_MSE")))
    found = stored_rows(plan)
    ok = [t.key for t in trials if found.get(t.key, {}).get("status") == "cached"]
    if len(ok) != len(trials):
        missing = [t.key for t in trials if t.key not in ok]
        raise RuntimeError(f"{len(missing)} of {len(trials)} trials have no finished result in MLflow under parent "
                           f"{summary['parent_run_id']} (first: {missing[:3]}); {len(found)} rows found")
    return len(ok)


def part_recorded(services, shapes: list[tuple[int, int]], server_workers: int) -> str:
    state, svc, base = services
    rows = []
    for configs, seeds in shapes:
        spec = _census_spec(f"recorded-{configs}x{seeds}", configs, seeds)
        log = state / "logs" / "mlflow-server.log"
        cpu0, offset = _server_cpu(state), log.stat().st_size
        r = run_sweep(spec, base, svc, train_fn=STUB)
        cpu = _server_cpu(state) - cpu0
        time.sleep(1.0)  # the access lines of the last requests
        requests = sum(_requests(log, offset).values())
        found = verify_recorded(spec, r)
        t = r["timing"]
        fan = t["fanout_s"]
        rows.append([r["trials"], f"{configs} x {seeds}", t.get("chunks", ""), f"{t['prepare_s']:.1f}", f"{fan:.1f}",
                     f"{t['summary_s']:.1f}", f"{r['wall_s']:.1f}", f"**{r['trials'] / fan:.0f}**",
                     f"{configs / fan:.1f}", f"{cpu:.1f}", requests, f"{requests / configs:.1f}",
                     f"{requests / r['trials']:.2f}", f"{found}/{r['trials']}"])
    return (f"`child_per: config` census with the stub trial function (`{STUB}`: a fixed result at once), "
            "configurations x seeds as in the table, 2 Dask workers, `sweepnet sweep` against PostgreSQL-backed "
            f"MLflow with basic auth ({server_workers} server worker(s), auth cache 60 s). Recorded trials/s = "
            "trials / fan-out s; requests = the server's, whole sweep (access log); verified = trials whose result "
            "MLflow holds under the parent (`collect.stored_rows`).\n\n"
            + _table(["trials", "configurations x seeds", "chunks", "prepare s", "fan-out s", "summary s",
                      "end to end s", "recorded trials/s", "configuration children/s", "server CPU s", "requests",
                      "per configuration", "per trial", "verified"],
                     rows))


def _server_cpu(state: Path) -> float:
    from _mlflow_bench import server_cpu

    return server_cpu(state)


# ---------------------------------------------------------------- 4. driver memory per trial
METRICS = ("train_MSE", "train_RMSE", "train_MAE", "train_r2", "train_mean_residual_deviance")


def memory_worker(seeds: int) -> dict:
    """In a fresh process: RSS growth of expanding the census at ``seeds`` seeds and of its outcomes."""
    import gc

    import psutil

    from pipeline.sweep import driver
    from pipeline.sweep.collect import Collector
    from pipeline.sweep.outcome import TrialOutcome
    from pipeline.sweep.runner import ChunkOptions

    raw = yaml.safe_load(CENSUS.read_text())
    raw["base"] = str((CENSUS.parent / raw["base"]).resolve())
    rss = psutil.Process().memory_info
    driver.validate({**raw, "seeds": 2})  # imports, data loading, caches: not per trial
    gc.collect()
    rss0 = rss().rss
    t0 = time.perf_counter()
    spec, trials = driver.validate({**raw, "seeds": seeds})
    expand_s = time.perf_counter() - t0
    gc.collect()
    rss1 = rss().rss
    spec = spec.model_copy(update={"child_per": "trial"})  # Collector logs no config child: no tracking here
    plan = driver.SweepPlan(spec, None, trials, sorted(spec.space), ChunkOptions(spec.name, "train_MSE", "trial"),
                            100, "", "bench")
    with open(os.devnull, "w") as sink:
        collector = Collector(plan, stream=sink, every=3600)
        for i in range(0, len(trials), 100):  # chunks of 100, each outcome its own objects (as unpickled)
            collector.add([TrialOutcome.of(t, "finished", objective=0.01 + 1e-9 * t.index,
                                           metrics={m: 0.01 + 1e-9 * t.index for m in METRICS}, seconds=0.5,
                                           epochs_run=10000, pid=4242, ended=time.time())
                           for t in trials[i:i + 100]])
    gc.collect()
    rss2 = rss().rss
    return {"trials": len(trials), "expand_s": expand_s, "plan_bytes": rss1 - rss0, "outcome_bytes": rss2 - rss1,
            "rss": rss2}


def part_memory(seed_counts: list[int]) -> str:
    rows = []
    for seeds in seed_counts:
        proc = subprocess.run([sys.executable, __file__, "--memory-worker", str(seeds)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker ({seeds} seeds) failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        n = r["trials"]
        rows.append([f"{n:,}", f"{r['expand_s']:.1f}", f"{r['plan_bytes'] / n:,.0f}", f"{r['outcome_bytes'] / n:,.0f}",
                     f"{(r['plan_bytes'] + r['outcome_bytes']) / n:,.0f}", f"{r['rss'] / 2**20:,.0f}"])
    return ("Driver memory, no tracking: examples/sweeps/xor_census.yaml (9 configurations) expanded with "
            "`driver.validate` (plan), then one synthetic outcome per trial (5 metrics) through "
            "`collect.Collector` (outcomes); RSS growth per trial, each size in a fresh process.\n\n"
            + _table(["trials", "expansion s", "plan bytes/trial", "outcomes bytes/trial", "total bytes/trial",
                      "driver RSS MB"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    parser.add_argument("--server-workers", default="1,2,4", help="part children: mlflow server --workers values")
    parser.add_argument("--writers", default="1,2,4", help="part children: writer process counts")
    parser.add_argument("--children", type=int, default=40, help="part children: children per measurement")
    parser.add_argument("--request-trials", default="8,24", help="part requests: two sweep sizes (trials)")
    parser.add_argument("--top", type=int, default=12, help="part requests: endpoints listed")
    parser.add_argument("--shapes", default="200x20,50x100",
                        help="part recorded: CONFIGURATIONSxSEEDS census shapes, comma-separated (issue 12's size is "
                             "1000x20)")
    parser.add_argument("--sweep-server-workers", type=int, default=2,
                        help="parts requests and recorded: mlflow server --workers (default: %(default)s)")
    parser.add_argument("--memory-seeds", default="1111,11112",
                        help="part memory: seeds of the 9-configuration census (x9 trials)")
    parser.add_argument("--memory-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker is not None:
        print(json.dumps(memory_worker(args.memory_worker)))
        return 0
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parts = [p for p in args.part.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--part {args.part!r}: unknown {unknown}; choose from {','.join(PARTS)}")
    shared = {}  # parts requests and recorded share one set of services
    run = {"children": lambda: part_children(ints(args.server_workers), ints(args.writers), args.children),
           "requests": lambda: part_requests(shared["services"], ints(args.request_trials), args.top),
           "recorded": lambda: part_recorded(shared["services"], [tuple(ints(x.replace("x", ",")))
                                                                  for x in args.shapes.split(",") if x],
                                             args.sweep_server_workers),
           "memory": lambda: part_memory(ints(args.memory_seeds))}
    titles = {"children": "Children/s, one child per trial", "requests": "Requests per trial, by endpoint",
              "recorded": "Recorded trials/s, `child_per: config`", "memory": "Driver memory per trial"}
    with contextlib.ExitStack() as stack:
        for name in PARTS:
            if name not in parts:
                continue
            t0 = time.perf_counter()
            if name in ("requests", "recorded") and "services" not in shared:
                shared["services"] = stack.enter_context(sweep_services(mlflow_workers=args.sweep_server_workers))
            body = run[name]()
            print(f"### {titles[name]}\n\n{body}\n\n({time.perf_counter() - t0:.0f} s; load average "
                  f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
