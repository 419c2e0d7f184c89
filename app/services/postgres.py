"""A throwaway PostgreSQL cluster under the state directory, for the MLflow backend store and the Prefect database.

``initdb`` with a generated superuser password and ``scram-sha-256`` for every connection, the server listening
on the service host only with its Unix socket in the data directory (never ``/var/run/postgresql``), one role
and one database per service (``mlflow``, ``prefect``), each with its own generated password. The server refuses
to run as root, so as root it runs as the ``postgres`` system user that Debian's package creates. Passwords live
in ``<state_dir>/secrets/`` (0600) and reach the servers through their environment, never their command line.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from app.services import credentials, procs
from app.services.procs import ServiceError, free_port

SUPERUSER = "sweepnet"
DATABASES = ("mlflow", "prefect")
INSTALL_HINT = ("apt-get install -y postgresql-15   (as root; or `make setup`, which does it where it can)")


def bindir() -> Path:
    """Directory of ``initdb``/``postgres``: on PATH, else the newest ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise ServiceError(f"PostgreSQL server binaries (initdb) not found; install them: {INSTALL_HINT}")
    return Path(candidates[-1]).parent


def _as_server_user() -> dict:
    """``subprocess`` keyword arguments that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("running as root and there is no `postgres` system user to run the server as; "
                           f"install the server package ({INSTALL_HINT}) or run as an ordinary user") from None
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _prepare_dirs(pdir: Path, drop: dict) -> Path:
    """``pdir`` (ours, 0711) holding ``data/`` owned by the server user (0700); checks the server can reach it."""
    pdir.mkdir(parents=True, exist_ok=True)
    data = pdir / "data"
    data.mkdir(exist_ok=True)
    if drop:
        pdir.chmod(0o711)
        shutil.chown(data, "postgres", "postgres")
        if subprocess.run(["test", "-w", str(data)], **drop).returncode != 0:
            raise ServiceError(
                f"the postgres user cannot reach {data}: a parent directory is not traversable by others "
                "(e.g. /tmp/pytest-of-root is 0700); use a --state-dir whose parents are (chmod o+x)")
    data.chmod(0o700)
    return data


def _initdb(data: Path, password: str, drop: dict) -> None:
    pwfile = data.parent / "pwfile"
    credentials.write_private(pwfile, password + "\n")
    if drop:
        shutil.chown(pwfile, "postgres", "postgres")
    try:
        out = subprocess.run([str(bindir() / "initdb"), "-D", str(data), "-A", "scram-sha-256",
                              f"--pwfile={pwfile}", "-U", SUPERUSER, "-E", "UTF8", "--no-instructions"],
                             capture_output=True, text=True, timeout=120, cwd=str(data), **drop)
    finally:
        pwfile.unlink(missing_ok=True)
    if out.returncode != 0:
        raise ServiceError(f"initdb failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def _connect(host: str, port: int, password: str, dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=host, port=port, user=SUPERUSER, password=password, dbname=dbname,
                            connect_timeout=3)


def _ready(host: str, port: int, password: str) -> bool:
    try:
        _connect(host, port, password).close()
        return True
    except Exception:  # psycopg2.OperationalError while it starts up
        return False


def _create_databases(host: str, port: int, superpw: str, passwords: dict[str, str]) -> None:
    """One login role and one database it owns per service; existing ones keep their data, passwords reset."""
    from psycopg2 import sql

    con = _connect(host, port, superpw)
    con.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with con.cursor() as cur:
            for name, pw in passwords.items():
                cur.execute("select 1 from pg_roles where rolname = %s", (name,))
                verb = "alter" if cur.fetchone() else "create"
                cur.execute(sql.SQL(verb + " role {} with login password %s").format(sql.Identifier(name)), (pw,))
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name),
                                                                               sql.Identifier(name)))
    finally:
        con.close()


def start_postgres(state_dir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                   timeout: float = 60.0) -> dict:
    """Start (initialising on first use) the cluster in ``<state_dir>/postgres/data``; wait for a login.

    Returns the service info (host, port, databases, data directory, start-up seconds); no passwords.
    Use :func:`database_url` for the connection URLs.
    """
    t0 = time.monotonic()
    drop = _as_server_user()
    data = _prepare_dirs((Path(state_dir) / "postgres").resolve(), drop)
    superpw = credentials.secret(state_dir, "postgres-superuser")
    if not (data / "PG_VERSION").exists():
        _initdb(data, superpw, drop)
    listen = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    port = port or free_port(listen)
    cmd = [str(bindir() / "postgres"), "-D", str(data), "-k", str(data), "-h", host, "-p", str(port)]
    rec = procs.spawn(state_dir, "postgres", "postgres", cmd, {k: v for k, v in os.environ.items()
                                                              if not k.startswith("PG")}, data, run_as=drop)
    procs.record_service(state_dir, [rec], "postgres", {"host": listen, "port": port, "starting": True})
    procs.wait_until(lambda: _ready(listen, port, superpw), [rec], "PostgreSQL to accept a login", timeout)
    _create_databases(listen, port, superpw, {db: credentials.secret(state_dir, f"postgres-{db}")
                                              for db in DATABASES})
    info = {"host": listen, "port": port, "databases": list(DATABASES), "data_dir": str(data),
            "startup_s": round(time.monotonic() - t0, 2)}
    procs.record_service(state_dir, [], "postgres", info)
    return info


def database_url(state_dir: Path, info: dict, database: str, driver: str) -> str:
    """``postgresql+DRIVER://DB:PASSWORD@HOST:PORT/DB``: a secret, for a server's environment only."""
    password = credentials.secret(state_dir, f"postgres-{database}", create=False)
    if password is None:
        raise ServiceError(f"no password recorded for database {database!r}; run `sweepnet services up "
                           "--backend postgres` again")
    return (f"postgresql+{driver}://{database}:{quote(password, safe='')}@{info['host']}:{info['port']}/"
            f"{database}")
