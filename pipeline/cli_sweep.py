"""``sweepnet sweep``, ``sweepnet demo``, ``sweepnet ui`` and ``sweepnet deploy``.

The pipeline never imports Prefect: these commands start the flow (``flows/sweep.py``) or the deployment
helper (``flows/deploy.py``) as a child process, after exporting ``PREFECT_API_URL`` so that the flow and
every Dask worker it spawns talk to one Prefect server.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
DEMO = ("xor_census.yaml", "digits_grid.yaml")

SWEEP_HELP = """\
A sweep file is a base training config plus a search space (see examples/sweeps/):

  name: xor-init-census
  base: ../xor.yaml                     # path relative to the sweep file, or an inline config
  objective: {metric: train_MSE, direction: minimize}
  strategy: {kind: Cartesian}           # or {kind: RandomDiscrete, max_models: 20, seed: 7,
                                        #     max_runtime_secs: 600}
  seeds: 20                             # or [1, 2, 3]: the initialisation axis (never overridden)
  space:                                # any dotted field of the training config
    model.hidden: [[2], [3], [4]]       # grid lists ...
    model.initial_weight_scale: [0.01, 0.1, 1.0]
    model.rate: {loguniform: [1.0e-4, 1.0e-1]}   # ... or (RandomDiscrete) uniform/loguniform/choice/int
  halving: {rungs: [200, 1000, 4000], keep: 0.34} # optional successive halving over model.epochs
  child_per: trial                      # or config: one MLflow child per configuration with a
                                        #   per-seed table (for censuses of thousands of seeds)
  chunk_size: auto                      # trials per Prefect task (auto: ~20 s of work each)
  census: {metric: train_MSE, solved_below: 0.05}   # what "solved" means in the census

Where it runs:
  default        a LocalCluster (one single-threaded worker process per core, 127.0.0.1), one local
                 Prefect server started for the sweep, MLflow in STORE/mlflow.db
  existing infra --dask-address tcp://HOST:8786 (or SWEEPNET_DASK_ADDRESS), MLFLOW_TRACKING_URI,
                 PREFECT_API_URL; e.g. `eval "$(sweepnet services up)"`

Rerunning the same command resumes: trials with a FINISHED child are skipped, stale RUNNING children
are marked KILLED. Exit code: 0 all trials finished, 3 some failed (see the table), 2 refused before
fan-out (bad spec/config/data or a wrong gradient), 1 the sweep itself failed (e.g. every worker gone).
"""


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("sweep", help="run a hyperparameter x initialisation sweep (Prefect + Dask + MLflow)",
                              description="Run sweeps end to end and print the summary table.",
                              epilog=SWEEP_HELP, formatter_class=fmt)
    p.add_argument("specs", nargs="+", metavar="SWEEP.yaml", help="sweep file(s), run one after another")
    _common(p)
    p.set_defaults(func=cmd_sweep)

    d = subparsers.add_parser("demo", help="the demo: XOR initialisation census + digits grid, then the tables",
                              description=f"Runs {', '.join(DEMO)} from examples/sweeps on embedded defaults.",
                              formatter_class=fmt)
    _common(d)
    d.set_defaults(func=cmd_demo, specs=[str(EXAMPLES / n) for n in DEMO])

    u = subparsers.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for a sweep store",
                              description="Serve the MLflow UI for STORE/mlflow.db (Ctrl-C stops it).")
    u.add_argument("--store", default=".sweepnet", help="sweep store directory (default: %(default)s)")
    u.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: %(default)s)")
    u.set_defaults(func=cmd_ui)

    dep = subparsers.add_parser(
        "deploy", help="schedule a sweep as a Prefect deployment (cron)", formatter_class=fmt,
        description="Create a scheduled deployment of the sweep flow on the Prefect server at PREFECT_API_URL.",
        epilog="Whole path:\n  eval \"$(sweepnet services up --only prefect)\"   # server + process pool"
               "\n  sweepnet deploy examples/sweeps/xor_census.yaml --cron '0 3 * * *'\n"
               "The pool's `prefect worker` runs each scheduled sweep (LocalCluster per run). --serve instead keeps\n"
               "this process in the foreground serving the schedule (stopping it pauses the schedule).")
    dep.add_argument("spec", metavar="SWEEP.yaml")
    dep.add_argument("--cron", required=True, help="cron schedule, e.g. '*/30 * * * *'")
    dep.add_argument("--name", default=None, help="deployment name (default: the sweep's name)")
    dep.add_argument("--pool", default="sweepnet-process", help="process work pool (default: %(default)s)")
    dep.add_argument("--store", default=".sweepnet", help="sweep store for the scheduled runs")
    dep.add_argument("--serve", action="store_true", help="serve the schedule from this process instead")
    dep.set_defaults(func=cmd_deploy)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=".sweepnet",
                   help="directory of the MLflow sqlite store, artifacts, summaries (default: %(default)s)")
    p.add_argument("--dask-address", default=None, help="existing scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--workers", type=int, default=None, help="embedded cluster size (default: one per core)")
    p.add_argument("--worker-timeout", type=float, default=120.0,
                   help="fail after this many seconds with no live Dask worker (default: %(default)s)")
    p.add_argument("--no-gradcheck", action="store_true", help="skip the pre-flight gradient check")
    p.add_argument("--top", type=int, default=10, help="leaderboard lines to print (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show Prefect and Dask logs")


@contextmanager
def prefect_server(store: Path, verbose: bool = False):
    """Environment for one Prefect API: ``PREFECT_API_URL`` if set, else a local server for this command."""
    env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if not verbose:
        env.update({"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_ROOT_LEVEL": "WARNING",
                    "DASK_LOGGING__DISTRIBUTED": "warning", "MLFLOW_LOGGING_LEVEL": "WARNING"})
    if os.environ.get("PREFECT_API_URL"):
        yield env
        return
    from pipeline.services import start_prefect, stop_services

    state = (store / "prefect-for-sweeps").resolve()
    print(f"starting a local Prefect server (state in {state}) ...", file=sys.stderr, flush=True)
    info = start_prefect(state, worker=False, ui=False)
    try:
        yield {**env, "PREFECT_API_URL": info["api_url"], "PREFECT_HOME": str(state / "prefect")}
    finally:
        stop_services(state, only=["prefect"])


def run_specs(args: argparse.Namespace) -> int:
    """Run each sweep file in a child ``python -m flows.sweep`` process; print its summary."""
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    worst = 0
    with prefect_server(store, args.verbose) as env:
        for spec in args.specs:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "summary.json"
                cmd = [sys.executable, "-m", "flows.sweep", spec, "--store", str(store),
                       "--worker-timeout", str(args.worker_timeout), "--summary-json", str(out)]
                cmd += ["--dask-address", args.dask_address] if args.dask_address else []
                cmd += ["--workers", str(args.workers)] if args.workers else []
                cmd += ["--no-gradcheck"] if args.no_gradcheck else []
                code = subprocess.run(cmd, env={**os.environ, **env}).returncode
                if out.exists():
                    print_summary(json.loads(out.read_text()), args.top)
                worst = max(worst, code)
    print(f"\nOpen the MLflow UI:  sweepnet ui --store {store}   (then http://127.0.0.1:5000)")
    return worst


def print_summary(summary: dict, top: int) -> None:
    """Leaderboard head, census (when seeds were swept) and the counts."""
    folder = Path(summary["summary_dir"])
    rows = list(csv.DictReader(open(folder / "leaderboard.csv")))
    if rows:
        metric_cols = list(rows[0])[list(rows[0]).index("rung") + 1: list(rows[0]).index("status")]
        hide = {"run_id", "key", *metric_cols[3:]}  # objective + two more metrics; the rest is in the CSV
        print("\n" + _table(rows[:top], hide, keep={"rank", "status", *metric_cols[:1]}))
    census = list(csv.DictReader(open(folder / "census.csv"))) if (folder / "census.csv").exists() else []
    if census and any(r.get("seed") for r in rows):
        print("\ninitialisation census (share of seeds reaching the best objective / solved; spread over seeds):")
        print(_table(census, set(), keep={"n_seeds", "n_failed", "share_best", "share_solved", "median"}))
    print(f"\n{summary['trials']} trials: {summary['trials_finished']} finished, {summary['trials_failed']} failed, "
          f"{summary.get('trials_skipped', 0)} skipped, {summary.get('trials_missing', 0)} missing. "
          f"Tables and plots: {folder}")


def _table(rows: list[dict], hide: set[str], keep: set[str]) -> str:
    """Markdown of ``rows`` without hidden columns and without columns that never vary."""
    cols = [c for c in rows[0] if c not in hide and (c in keep or len({r[c] for r in rows}) > 1)]
    return _md([cols] + [[r[c] for c in cols] for r in rows])


def _md(table: list[list[str]]) -> str:
    head, body = table[0], table[1:]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def cmd_sweep(args: argparse.Namespace) -> int:
    return run_specs(args)


def cmd_demo(args: argparse.Namespace) -> int:
    return run_specs(args)


def cmd_ui(args: argparse.Namespace) -> int:
    db = Path(args.store).resolve() / "mlflow.db"
    if not db.exists():
        raise FileNotFoundError(f"no MLflow store at {db}; run `sweepnet sweep SWEEP.yaml --store {args.store}` first")
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else shutil.which("mlflow") or "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
           "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)  # the UI replaces this process: Ctrl-C / SIGTERM reach it directly


def cmd_deploy(args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("schedules need a real Prefect server: run `eval \"$(sweepnet services up --only prefect)\"` "
                           "(or export PREFECT_API_URL) and deploy again")
    cmd = [sys.executable, "-m", "flows.deploy", args.spec, "--cron", args.cron, "--pool", args.pool,
           "--store", args.store] + (["--name", args.name] if args.name else []) + (["--serve"] if args.serve else [])
    return subprocess.run(cmd).returncode
