"""Run every benchmark and write BENCHMARKS.md from what they print.

Each benchmark prints Markdown to stdout and runs its implementations in
separate processes with thread pools pinned. This script only sequences them,
records the machine and its load before and after each, and assembles the file.

    python benchmarks/run_all.py [--only dense,conv,parquet,sweep,tracking] [--quick]

With ``--only``, the sections of the other benchmarks already in the output file are kept as they are (each
keeps its own date and load line), so that a part can be re-measured without rerunning the rest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BENCHES = {
    "dense": ("Dense networks (issue 2)", ["benchmarks/bench_dense.py"], ["--quick"]),
    "autoencoder": ("Sparse autoencoder loss-and-gradient (issue 3)", ["benchmarks/bench_autoencoder.py"], []),
    "parquet": ("Parquet patch datasets (issue 3)", ["benchmarks/bench_parquet.py"], ["--sizes", "10000,100000"]),
    "conv": ("Convolution + pooling, UFLDL exercise shape (issues 4, 15)",
             ["benchmarks/bench_conv.py", "--n", "64", "--repeats", "5", "--rounds", "3", "--memory-images", "10000"],
             ["--rounds", "1", "--memory-images", "2000"]),
    "sweep": ("Sweeps: orchestration overhead, the 10,000-trial census (issue 5), a small sweep's fixed cost "
              "(issue 15)",
              ["benchmarks/bench_sweep.py"], ["--part", "overhead"]),
    "auth": ("MLflow basic auth: the credential cache (issue 12)",
             ["benchmarks/bench_auth_cache.py", "--children", "40", "--writers", "1,2"], ["--children", "10"]),
    "tracking": ("Tracking at scale: children/s by server workers, requests per trial, recorded trials/s, driver "
                 "memory per trial (issue 12)",
                 ["benchmarks/bench_tracking.py"],
                 ["--server-workers", "1,2", "--writers", "1,2", "--children", "10", "--request-trials", "4,8",
                  "--shapes", "100x10", "--memory-seeds", "1111"]),
    "search": ("Adaptive search: TPE vs random, ASHA vs synchronous halving, Optuna overhead (issue 16)",
               ["benchmarks/bench_search.py"], ["--quick"]),
    "continuation": ("Halving: checkpoint continuation vs retraining, examples/sweeps/xor_random.yaml (issue 16)",
                     ["benchmarks/bench_continuation.py", "--repeats", "3"], ["--repeats", "1"]),
}


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def run(name: str, quick: bool) -> str:
    title, command, quick_args = BENCHES[name]
    script = ROOT / command[0]
    if not script.exists():
        return f"## {title}\n\n(not run: {command[0]} is missing)\n"
    args = [sys.executable, str(script), *command[1:], *(quick_args if quick else [])]
    before, stamp = _load(), dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"running {' '.join(args[1:])} (load {before})", file=sys.stderr, flush=True)
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    body = result.stdout.strip() or "(no output)"
    if result.returncode != 0:
        body += f"\n\nexit code {result.returncode}; stderr tail:\n```\n{result.stderr[-2000:]}\n```"
    return (f"## {title}\n\n`{' '.join(args[1:]).replace(str(ROOT) + '/', '')}` — measured {stamp}; "
            f"load average (1/5/15 min) "
            f"before {before}, after {_load()}\n\n{body}\n")


def _sections(path: Path) -> dict[str, str]:
    """The ``## title`` sections of an existing BENCHMARKS.md, by title."""
    if not path.exists():
        return {}
    parts = path.read_text().split("\n## ")[1:]
    return {part.split("\n", 1)[0]: "## " + part.rstrip("\n") + "\n" for part in parts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ", ".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="smaller runs (for a smoke check, not for the record)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    header = (f"# Benchmarks\n\nWritten by `make bench` (benchmarks/run_all.py) on {dt.date.today()}: "
              f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
              "Each section's first line says when it was measured and the machine's load; ratios compare "
              "implementations measured in the same run, each in its own process with its thread pools pinned.\n")
    kept = _sections(Path(args.out))
    fresh = {name: run(name, args.quick) for name in names}
    sections = [fresh.get(name) or kept.get(BENCHES[name][0]) for name in BENCHES]
    Path(args.out).write_text("\n".join([header, *[s for s in sections if s]]))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
