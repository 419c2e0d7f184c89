"""Helpers of the fault tests: sweep files, the CLI in a killable subprocess, MLflow census and digests,
the measurement log (``benchmarks/results/reliability.jsonl``) that ``benchmarks/reliability_report.py``
turns into RELIABILITY.md."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from pipeline import tracking

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "reliability.jsonl"
RUN_ID = time.strftime("%Y-%m-%dT%H:%M:%S") + f"-{os.getpid()}"

# XOR trials of ~1-2 s of training each (the kernels run ~4 us per epoch), long enough to be killed mid-trial
# (regression_stop -1: h2o's default would end a solved XOR at training MSE 1e-6, long before 400,000 epochs).
XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 400000, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0, "seed": 1,
                 "regression_stop": -1}}
# The spec every disturbed run is compared with (same trial keys in every store): 2 widths x 4 seeds.
FAULT_SPEC = {"name": "faults", "base": XOR, "seeds": [1, 2, 3, 4], "chunk_size": 1,
              "objective": {"metric": "train_MSE"}, "space": {"model.hidden": [[2], [3]]}}
N_FAULT_TRIALS = 8


def record(test: str, **fields) -> None:
    """Append one measurement line for ``test`` to the reliability log."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = {"run": RUN_ID, "test": test, "kind": "measure", "time": time.time(), **fields}
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(line, default=str) + "\n")


def write_spec(folder: Path, raw: dict, stem: str = "sweep") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without service pointers, the project importable, quiet Prefect."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SWEEPNET_DASK_ADDRESS")}
    env.update({"PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING", "MPLBACKEND": "Agg"})
    env.update(extra)
    return env


class Proc:
    """A sweep command in its own session (so the whole tree can be killed), output to files."""

    def __init__(self, cmd: list[str], env: dict[str, str], folder: Path, label: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / f"{label}.out", folder / f"{label}.err"
        self.start = time.monotonic()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(cmd, env=env, cwd=folder, stdout=out, stderr=err,
                                          start_new_session=True)

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        """Exit code; on timeout the process group is killed and the test fails with the output tail."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sweep still running after {timeout} s; stderr:\n{self.stderr[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL the command's whole process group (only processes this test started)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=60)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()


def cli_sweep(spec: Path, store: Path, env: dict[str, str], *args: str, label: str = "run") -> Proc:
    """``sweepnet sweep SPEC --store STORE ...`` (through ``python -m app``)."""
    cmd = [sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store), *args]
    return Proc(cmd, env, store.parent / "logs", label)


def flow_sweep(spec: Path, store: Path, env: dict[str, str], *args: str, label: str = "run") -> Proc:
    """``sweepnet sweep SPEC`` writing ``--summary-json`` (tests pass the hidden ``--train-fn`` hook here)."""
    cmd = [sys.executable, "-m", "app", "sweep", str(spec), "--store", str(store),
           "--summary-json", str(store.parent / f"{label}-summary.json"), *args]
    return Proc(cmd, env, store.parent / "logs", label)


def sqlite_finished(db: Path) -> int:
    """FINISHED trial children in an MLflow sqlite file, read-only (never creates or migrates it)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        row = con.execute(
            "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = ? and r.status = 'FINISHED' and r.lifecycle_stage = 'active'",
            (tracking.TAG_KEY,)).fetchone()
        return int(row[0])
    except sqlite3.Error:  # tables not created yet
        return 0
    finally:
        con.close()


def wait_for(predicate, proc: Proc, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.2 s until true; fail if ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited ({proc.poll()}) before {what}; stderr:\n{proc.stderr[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s; stderr:\n{proc.stderr[-3000:]}")
        time.sleep(0.2)


def sweep_ctx(uri: str, name: str) -> tracking.TrackingContext:
    """The tracking context of sweep ``name`` (its experiment and parent run) in store ``uri``."""
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(name)
    assert exp is not None, f"no experiment {name!r} in {uri}"
    parents = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")
    assert len(parents) == 1, f"{len(parents)} parent runs for sweep {name!r}"
    return tracking.TrackingContext(uri, exp.experiment_id, parents[0].info.run_id)


def sqlite_uri(store: Path) -> str:
    return f"sqlite:///{store.resolve() / 'mlflow.db'}"


def census(ctx: tracking.TrackingContext) -> dict:
    """Children by trial key, deleted ones included (a duplicate execution deletes its own child)."""
    from mlflow.entities import ViewType

    c = tracking.client(ctx.tracking_uri)
    runs = c.search_runs([ctx.experiment_id], filter_string=f"tags.`{tracking.PARENT}` = '{ctx.parent_run_id}'",
                         run_view_type=ViewType.ALL, max_results=5000)
    by_key: dict[str, list] = {}
    for r in runs:
        by_key.setdefault(r.data.tags.get(tracking.TAG_KEY), []).append(r)
    active = {k: [r for r in v if r.info.lifecycle_stage == "active"] for k, v in by_key.items()}
    return {
        "by_key": active,
        "keys": sorted(k for k in by_key if k),
        "finished_once": sum(1 for v in active.values() if [r.info.status for r in v].count("FINISHED") == 1),
        "duplicates": sum(max(0, [r.info.status for r in v].count("FINISHED") - 1) for v in active.values()),
        "orphans": sum(r.info.status == "RUNNING" for v in active.values() for r in v),
        "killed": sum(r.info.status == "KILLED" for v in active.values() for r in v),
        "failed": sum(r.info.status == "FAILED" for v in active.values() for r in v),
        "deleted": sum(r.info.lifecycle_stage == "deleted" for v in by_key.values() for r in v),
        "finished_ids": {r.info.run_id for v in active.values() for r in v if r.info.status == "FINISHED"},
    }


def _weights_digest(c, run_id: str, tmp: Path) -> str:
    local = c.download_artifacts(run_id, "model/weights.npz", str(tmp))
    h = hashlib.sha256()
    with np.load(local) as npz:  # arrays only (zip members carry timestamps)
        for name in sorted(npz.files):
            a = npz[name]
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def digests(ctx: tracking.TrackingContext, tmp: Path) -> dict[str, dict[str, str]]:
    """Per trial key of each FINISHED child: a digest of its final metrics (exact float bits) and of
    its weights (``model/weights.npz``)."""
    c = tracking.client(ctx.tracking_uri)
    out = {}
    for key, runs in census(ctx)["by_key"].items():
        for r in runs:
            if r.info.status != "FINISHED":
                continue
            metrics = json.dumps(sorted((k, float(v).hex()) for k, v in r.data.metrics.items()))
            folder = tmp / r.info.run_id
            folder.mkdir(parents=True, exist_ok=True)
            out[key] = {"metrics": hashlib.sha256(metrics.encode()).hexdigest()[:16],
                        "weights": _weights_digest(c, r.info.run_id, folder)}
    return out


def leaderboard(store: Path) -> list[dict]:
    """The summary table the CLI wrote (``STORE/summaries/*/leaderboard.csv``), without run ids."""
    import csv

    files = sorted(store.glob("summaries/*/leaderboard.csv"))
    assert files, f"no leaderboard.csv under {store}/summaries"
    with open(files[-1]) as fh:
        return [{k: v for k, v in row.items() if k != "run_id"} for row in csv.DictReader(fh)]


def worker_processes(state_dir: Path) -> list[psutil.Process]:
    """The worker process under each recorded ``dask worker`` nanny (the nanny restarts it when it dies)."""
    procs = []
    for nanny in nannies(state_dir):
        try:
            kids = nanny.children()
        except psutil.NoSuchProcess:
            continue
        for p in kids:  # the worker is the multiprocessing child; the resource tracker is left alone
            try:
                if p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline()):
                    procs.append(p)
            except psutil.Error:
                pass
    return procs


def nannies(state_dir: Path) -> list[psutil.Process]:
    out = []
    for pid_file in sorted((state_dir / "pids").glob("dask-worker-*.pid")):
        try:
            out.append(psutil.Process(int(pid_file.read_text().split()[0])))
        except psutil.NoSuchProcess:
            pass
    return out


def summary_diffs(rows: list[dict], reference: list[dict]) -> list[str]:
    """What differs between two leaderboards (run ids dropped; ``cached`` counts as ``finished``, since
    it only says that an earlier run logged the trial)."""
    def norm(table):
        return {r["key"]: {**r, "status": "finished" if r["status"] == "cached" else r["status"]} for r in table}

    got, want = norm(rows), norm(reference)
    out = []
    cols_got, cols_want = set(rows[0]) if rows else set(), set(reference[0]) if reference else set()
    if cols_got != cols_want:
        out.append(f"columns: extra {sorted(cols_got - cols_want)}, missing {sorted(cols_want - cols_got)}")
    for key in sorted(set(got) | set(want)):
        a, b = got.get(key, {}), want.get(key, {})
        bad = [f"{c}={a.get(c)!r} (undisturbed {b.get(c)!r})" for c in sorted(cols_want) if a.get(c) != b.get(c)
               and c not in ("rank",)]
        if bad:
            out.append(f"trial {key}: " + ", ".join(bad[:4]))
    if [r["key"] for r in rows] != [r["key"] for r in reference]:
        out.append("ranking order differs")
    return out


def failure_line(stderr: str, prefix: str = "sweep failed:") -> str:
    """The last ``sweep failed: ...`` line (Prefect's logger may glue it to its own last line)."""
    hits = [line[line.index(prefix):] for line in stderr.splitlines() if prefix in line]
    return hits[-1] if hits else ""
