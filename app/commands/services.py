"""``sweepnet services up|down|status``: real local services for sweeps, on 127.0.0.1.

Also ``python -m app services up`` (what ``infra/local/up.sh`` runs).
"""

from __future__ import annotations

import argparse
import json
import sys

from app.services import (
    ALL_SERVICES,
    DEFAULT_POOL,
    DEFAULT_STATE_DIR,
    SERVICES,
    ServiceError,
    load_service_set,
    other_hosts_note,
    service_status,
    kept_note,
    start_services,
    stop_services,
)

_DESCRIPTION = """\
Start, inspect and stop the services a distributed sweep talks to, as local processes:

  dask      `dask scheduler` + N `dask worker` processes (1 thread each)
  mlflow    a lean `mlflow server` (1 worker unless --mlflow-workers, job execution off,
            SQLite + proxied artifacts)
  prefect   `prefect server` + a `process` work pool + `prefect worker`
  postgres  with --backend postgres: a throwaway PostgreSQL cluster in the state directory
            holding MLflow's backend store and the Prefect database

`sweepnet sweep` keeps its own Prefect server and Dask workers in STORE/services (the default
state directory for the default store) with an idle watch (`sweepnet-idle-watch`) that stops
them after SWEEPNET_SERVICES_IDLE_S seconds unused (600); `status` shows them, `down` stops
them now, and `up` replaces them with its own.

Everything binds 127.0.0.1 unless you pass --host. Beyond loopback every service is locked
by default (--auth on loopback, --no-auth to refuse): MLflow basic auth with a non-admin
pipeline user, a Prefect API auth string, Dask over TLS with generated certificates.
PIDs, logs, secrets (0600) and data live in the state directory (default
.sweepnet/services/); `down` stops only the PIDs recorded there. `up` prints the
environment to export so that `sweepnet sweep` uses these services, credentials of the
pipeline user included (never the MLflow admin's):

  eval "$(sweepnet services up --dask-workers 2)"
  sweepnet sweep SWEEP.yaml --dask-address "$SWEEPNET_DASK_ADDRESS"
  sweepnet services down
"""

_EPILOG = """\
Secrets: the MLflow admin password and Flask secret key are read from
MLFLOW_AUTH_ADMIN_PASSWORD / MLFLOW_FLASK_SERVER_SECRET_KEY when set, else generated into
STATE_DIR/secrets/ (0600); they reach the MLflow server only. The exported
MLFLOW_TRACKING_USERNAME/PASSWORD belong to the pipeline user `sweepnet-pipeline`.
MLflow checks a password once per minute per user (auth_cache_ttl_seconds = 60): without
that cache every request costs a scrypt check.
Start-up cost measured on a 2-core machine: dask ~3-13 s, mlflow ~10-15 s, prefect ~13-17 s,
postgres ~1-3 s; `up` starts them concurrently (postgres first).
"""


def _add_common(p: argparse.ArgumentParser, services: tuple[str, ...] = SERVICES) -> None:
    p.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                   help="directory for PID files, logs, secrets and data (default: %(default)s)")
    p.add_argument("--only", default=",".join(services), metavar="LIST",
                   help="comma-separated subset of %(default)s")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``services`` subcommand (with ``up``, ``down``, ``status``) to ``subparsers``."""
    parser = subparsers.add_parser(
        "services", help="start/stop local Dask, MLflow, Prefect (and PostgreSQL) servers",
        description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="services_action", metavar="{up,down,status}")
    actions.required = True
    up = actions.add_parser("up", help="start services and wait until each answers a real request")
    _add_common(up)
    up.add_argument("--dask-workers", type=int, default=2, metavar="N",
                    help="number of `dask worker` processes, 1 thread each (default: %(default)s)")
    up.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                    help="where MLflow and Prefect keep their data; postgres starts a local "
                         "PostgreSQL cluster in the state directory (default: %(default)s)")
    lock = up.add_mutually_exclusive_group()
    lock.add_argument("--auth", dest="auth", action="store_true", default=None,
                      help="lock every service even on 127.0.0.1 (the default beyond loopback)")
    lock.add_argument("--no-auth", dest="auth", action="store_false",
                      help="no auth and no TLS even beyond loopback (anyone who reaches the host can use them)")
    up.add_argument("--mlflow-auth", action="store_true", default=None,
                    help="MLflow basic auth with a non-admin pipeline user")
    up.add_argument("--prefect-auth", action="store_true", default=None,
                    help="Prefect API auth string (PREFECT_API_AUTH_STRING for clients)")
    up.add_argument("--dask-tls", action="store_true", default=None,
                    help="Dask over TLS with generated certificates (tls:// address)")
    up.add_argument("--mlflow-backend-store-uri", default=None, metavar="URI",
                    help="e.g. postgresql+psycopg2://user@host/db (default: SQLite in the state directory)")
    up.add_argument("--mlflow-workers", type=int, default=1, metavar="N",
                    help="`mlflow server --workers N`: processes serving the tracking API, each with its own "
                         "auth credential cache (default: %(default)s)")
    up.add_argument("--prefect-pool", default=DEFAULT_POOL, help="work pool name (default: %(default)s)")
    up.add_argument("--no-prefect-ui", action="store_true", help="serve the Prefect API without the UI")
    up.add_argument("--host", default="127.0.0.1",
                    help="bind address; anything but 127.0.0.1 exposes the services to the network")
    up.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                    help="health wait per service (default: %(default)s)")
    up.set_defaults(func=_cmd_up)
    down = actions.add_parser("down", help="stop the recorded processes (SIGTERM, then SIGKILL)")
    _add_common(down, ALL_SERVICES)
    down.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                      help="grace period before SIGKILL (default: %(default)s)")
    down.set_defaults(func=_cmd_down)
    status = actions.add_parser("status", help="show recorded processes, health and env exports")
    status.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                        help="directory for PID files, logs and data (default: %(default)s)")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.set_defaults(func=_cmd_status)
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    if args.host != "127.0.0.1" and args.auth is False:
        print(f"# WARNING: binding {args.host} with --no-auth: anyone who can reach this host can "
              "use these services", file=sys.stderr)
    try:
        svc = start_services(args.only, state_dir=args.state_dir, host=args.host,
                             dask_workers=args.dask_workers, backend=args.backend, auth=args.auth,
                             mlflow_auth=args.mlflow_auth, prefect_auth=args.prefect_auth,
                             dask_tls=args.dask_tls, mlflow_backend_store_uri=args.mlflow_backend_store_uri,
                             prefect_pool=args.prefect_pool, prefect_ui=not args.no_prefect_ui,
                             timeout=args.timeout, mlflow_workers=args.mlflow_workers)
    except (ServiceError, ValueError) as err:
        print(f"sweepnet services up: {err}", file=sys.stderr)
        return 1
    for name, secs in sorted(svc.startup_s.items()):
        print(f"# {name} ready in {secs:.1f} s", file=sys.stderr)
    if svc.dask_dashboard_url:
        print(f"# Dask dashboard: {svc.dask_dashboard_url}", file=sys.stderr)
    if svc.postgres:
        print(f"# PostgreSQL {svc.postgres['host']}:{svc.postgres['port']}, databases "
              f"{', '.join(svc.postgres['databases'])}", file=sys.stderr)
    if svc.mlflow_credentials:
        print(f"# MLflow admin: {args.state_dir}/secrets/mlflow-admin-password unless "
              "MLFLOW_AUTH_ADMIN_PASSWORD was set; not exported", file=sys.stderr)
    print(f"# stop with: sweepnet services down --state-dir {args.state_dir}", file=sys.stderr)
    if other_hosts_note(args.host):
        print(other_hosts_note(args.host), file=sys.stderr)
    print(svc.exports())
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    try:
        stopped = stop_services(args.state_dir, only=args.only, timeout=args.timeout)
    except ValueError as err:
        print(f"sweepnet services down: {err}", file=sys.stderr)
        return 1
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    rows = service_status(args.state_dir)
    svc = load_service_set(args.state_dir)
    if args.json:
        print(json.dumps({"processes": rows, "env": svc.env(), "startup_s": svc.startup_s},
                         indent=2))
        return 0 if rows and all(r["alive"] for r in rows) else 3
    if not rows:
        print(f"no services recorded in {args.state_dir}")
        return 3
    print(f"{'name':<20} {'pid':>7}  {'alive':<5}  {'healthy':<7}  log")
    for r in rows:
        print(f"{r['name']:<20} {r['pid']:>7}  {str(r['alive']):<5}  "
              f"{str(r.get('healthy')):<7}  {r['log']}")
    if any(r["service"] == "watch" and r["alive"] for r in rows):
        print(f"# kept between sweeps: {kept_note(args.state_dir)}")
    print(svc.exports())
    return 0 if all(r["alive"] for r in rows) else 3
