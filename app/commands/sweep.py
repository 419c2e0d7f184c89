"""``sweepnet sweep``, ``sweepnet demo``, ``sweepnet ui`` and ``sweepnet deploy``.

These call the flows in-process (``app.sweeps`` runs sweeps, ``flows.deploy`` registers schedules),
after exporting ``PREFECT_API_URL`` so that the flow and every Dask worker it spawns talk to one Prefect
server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sweeps"
DEMO = ("xor_census.yaml", "digits_grid.yaml")

SWEEP_HELP = """\
A sweep file is a base training config plus a search space (see examples/sweeps/):

  name: xor-init-census
  base: ../xor.yaml                     # path relative to the sweep file, or an inline config
  objective: {metric: train_MSE, direction: minimize}   # valid_* needs data.valid_fraction > 0;
                                        #   test_* is refused unless select_on_test: true
  strategy: {kind: Cartesian}           # or {kind: RandomDiscrete, max_models: 20, seed: 7,
                                        #     max_runtime_secs: 600, stopping_rounds: 3,
                                        #     stopping_metric: AUTO, stopping_tolerance: 0.001}
                                        #   or {kind: Optuna, sampler: tpe|cmaes|random|nsga2,
                                        #     n_trials: 48, seed: 0, max_concurrent: 4, aggregate: mean}
                                        #   (ask/tell over the workers; the study in STORE/optuna.db;
                                        #   a list of objectives is multi-objective: nsga2, Pareto front)
  seeds: 20                             # or [1, 2, 3]: the initialisation axis (never overridden)
  space:                                # any dotted field of the training config
    model.hidden: [[2], [3], [4]]       # grid lists ...
    model.initial_weight_scale: [0.01, 0.1, 1.0]
    model.rate: {loguniform: [1.0e-4, 1.0e-1]}   # ... or (RandomDiscrete) uniform/loguniform/choice/int
  halving: {rungs: [200, 1000, 4000], keep: 0.34} # optional successive halving over model.epochs;
                                        #   mode: sync (rung by rung) or async (ASHA: promote as soon
                                        #   as a result is in the top `keep` of its rung so far)
                                        #   (continue: true by default: promoted trials go on from
                                        #   their previous rung's checkpoint; false retrains from 0)
  child_per: trial                      # or config: one MLflow child per configuration, per-seed
                                        #   rows in chunk tables (censuses of thousands of seeds)
  log_model: all                        # MLflow model per child: all | best | none (censuses: best);
                                        #   the best is registered as models:/NAME@champion
  chunk_size: auto                      # trials per Prefect task (auto: ~20 s of work each)
  census: {metric: train_MSE, solved_below: 0.05}   # what "solved" means in the census
  pictures_top_k: 10                    # learning curve / feature picture for the best k children,
                                        #   drawn at summary time (0: none)

Where it runs:
  default        a local Prefect server and Dask workers (one single-threaded process per core) on
                 127.0.0.1, started by the first sweep and kept under STORE/services for the next one
                 (`sweepnet services status --state-dir STORE/services`; stopped after 600 s unused,
                 SWEEPNET_SERVICES_IDLE_S, or by `services down`; --no-keep-services or
                 SWEEPNET_KEEP_SERVICES=0: started and stopped per command); MLflow in STORE/mlflow.db
  existing infra --dask-address tcp://HOST:8786 (or SWEEPNET_DASK_ADDRESS), MLFLOW_TRACKING_URI,
                 PREFECT_API_URL; e.g. `eval "$(sweepnet services up)"`

Rerunning the same command resumes: trials with a FINISHED child are skipped, stale RUNNING children
are marked KILLED. Trial keys include the code version (sweepnet version + a digest of the kernels and the
training code): after an upgrade the trials run again unless --reuse-older. Two runs of one sweep at once:
the second is refused (exit 2, naming the host/pid that holds it) or waits with --wait SECONDS.

Exit code: 0 all trials finished, 3 some failed (see the table; when none produced the objective the
parent run is FAILED and the summary names the commonest error), 2 refused before fan-out (bad
spec/config/data, a wrong gradient, or the sweep already running), 1 the sweep itself failed (e.g. every
worker gone, or the summary could not be written).
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

    _register_deploy(subparsers, fmt)


def _register_deploy(subparsers, fmt) -> None:
    dep = subparsers.add_parser(
        "deploy", help="schedule a sweep as a Prefect deployment (cron)", formatter_class=fmt,
        description="Create a scheduled deployment of the sweep flow on the Prefect server at PREFECT_API_URL.\n"
                    "The deployment holds the resolved sweep inline, the store as a URI and the entrypoint\n"
                    "flows.sweep:scheduled_sweep of the installed package: any worker with sweepnet installed runs it.",
        epilog="Whole path:\n  eval \"$(sweepnet services up --only prefect)\"   # server + process pool"
               "\n  sweepnet deploy examples/sweeps/xor_census.yaml --cron '0 3 * * *' \\"
               "\n      --store sqlite:////srv/sweeps/mlflow.db\n"
               "The pool's `prefect worker` runs each scheduled sweep (a LocalCluster per run, or the scheduler at\n"
               "SWEEPNET_DASK_ADDRESS).\n"
               "Image pools (infra/README.md): --pool sweepnet-docker --pool-type docker, or\n"
               "--pool sweepnet-k8s --pool-type kubernetes; a missing pool is created from --job-template.\n"
               "--serve instead keeps this process in the foreground serving the schedule (stopping it pauses it).")
    dep.add_argument("spec", metavar="SWEEP.yaml")
    dep.add_argument("--cron", required=True, help="cron schedule, e.g. '*/30 * * * *'")
    dep.add_argument("--name", default=None, help="deployment name (default: the sweep's name)")
    dep.add_argument("--pool", default="sweepnet-process", help="work pool name (default: %(default)s)")
    dep.add_argument("--pool-type", default=None, choices=("process", "docker", "kubernetes"),
                     help="the pool's type: checked against an existing pool, used to create a missing one "
                          "(default: the existing pool's, else process)")
    dep.add_argument("--job-template", default=None, metavar="FILE",
                     help="base job template (YAML/JSON) for a pool that does not exist yet, e.g. "
                          "infra/prefect/docker-job-template.yaml")
    dep.add_argument("--store", default=None,
                     help="tracking store of the scheduled runs: a URI (sqlite:////srv/sweeps/mlflow.db, "
                          "http://mlflow:5000; credentials stay in the worker's environment) or a directory "
                          "(DIR/mlflow.db); default: the worker's MLFLOW_TRACKING_URI, else ~/.sweepnet there")
    dep.add_argument("--workers", type=int, default=None,
                     help="embedded Dask cluster size of each run (default: one per core of the worker)")
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
    p.add_argument("--reuse-older", action="store_true",
                   help="reuse finished trials computed by an older sweepnet version or kernel code (trial keys "
                        "include the code version, so by default those trials run again)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="if another run of the same sweep holds its lease, wait up to this long for it "
                        "(default: refuse at once, exit 2)")
    p.add_argument("--keep-services", action=argparse.BooleanOptionalAction, default=None,
                   help="without PREFECT_API_URL: keep the local Prefect server and Dask workers running under "
                        "STORE/services for the next sweep, stopped after SWEEPNET_SERVICES_IDLE_S seconds unused "
                        "(default 600) or by `sweepnet services down --state-dir STORE/services`; "
                        "--no-keep-services starts and stops them for this command only "
                        "(default: on unless SWEEPNET_KEEP_SERVICES=0)")
    # hooks for tests and benchmarks, hidden from --help: the last sweep's counts and timing as JSON, and the
    # dotted path of the per-trial training function (fault-injection tests swap it)
    p.add_argument("--summary-json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--train-fn", default=None, help=argparse.SUPPRESS)


def cmd_sweep(args: argparse.Namespace) -> int:
    from app.sweeps import run_specs

    return run_specs(args.specs, store=Path(args.store), dask_address=args.dask_address, n_workers=args.workers,
                     worker_timeout=args.worker_timeout, check_gradient=not args.no_gradcheck, top=args.top,
                     verbose=args.verbose, summary_json=args.summary_json, train_fn=args.train_fn,
                     reuse_older=args.reuse_older, lease_wait=args.wait, keep_services=args.keep_services)


cmd_demo = cmd_sweep


def cmd_ui(args: argparse.Namespace) -> int:
    db = Path(args.store).resolve() / "mlflow.db"
    if not db.exists():
        raise FileNotFoundError(f"no MLflow store at {db}; run `sweepnet sweep SWEEP.yaml --store {args.store}` first")
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else shutil.which("mlflow") or "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
           "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    from pipeline.ui_links import store_links

    links = store_links(f"sqlite:///{db}", args.port)
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it); sweeps in the training view:", flush=True)
    for name, url in links.items():
        print(f"  {name}: {url}")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)  # the UI replaces this process: Ctrl-C / SIGTERM reach it directly


def cmd_deploy(args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("schedules need a real Prefect server: run `eval \"$(sweepnet services up --only prefect)\"` "
                           "(or export PREFECT_API_URL) and deploy again")
    from flows import deploy
    from flows.deploy import store_uri

    uri, stripped = store_uri(args.store)
    if stripped:
        print(f"note: credentials removed from --store; the deployment names {uri}. Give the workers "
              "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD instead.", file=sys.stderr)
    dep = deploy(args.spec, args.cron, args.name, args.pool, args.store, args.serve, pool_type=args.pool_type,
                 job_template=args.job_template, n_workers=args.workers)
    where = "served here" if args.serve else f"on work pool {args.pool!r}"
    print(f"deployment {dep} scheduled with cron {args.cron!r} {where}, store {uri or 'the worker default'}, "
          f"on {os.environ['PREFECT_API_URL']}")
    return 0
