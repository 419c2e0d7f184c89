"""Run every benchmark and write BENCHMARKS.md from what they print.

Each benchmark prints Markdown to stdout and runs its implementations in
separate processes with thread pools pinned. This script only sequences them,
records the machine and its load before and after each, and assembles the file.

    python benchmarks/run_all.py [--only dense,conv,parquet,sweep] [--quick]
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
    "conv": ("Convolution + pooling, UFLDL exercise shape (issue 4)",
             ["benchmarks/bench_conv.py", "--n", "64", "--repeats", "5", "--rounds", "3", "--memory-images", "10000"],
             ["--rounds", "1", "--memory-images", "2000"]),
    "sweep": ("Sweeps: orchestration overhead and the 10,000-trial census (issue 5)",
              ["benchmarks/bench_sweep.py"], ["--part", "overhead"]),
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
    before = _load()
    print(f"running {' '.join(args[1:])} (load {before})", file=sys.stderr, flush=True)
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    body = result.stdout.strip() or "(no output)"
    if result.returncode != 0:
        body += f"\n\nexit code {result.returncode}; stderr tail:\n```\n{result.stderr[-2000:]}\n```"
    return (f"## {title}\n\n`{' '.join(args[1:]).replace(str(ROOT) + '/', '')}` — load average (1/5/15 min) "
            f"before {before}, after {_load()}\n\n{body}\n")


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
              "Every figure below was measured in that run; ratios compare implementations measured in the "
              "same run, each in its own process with its thread pools pinned.\n")
    sections = [run(name, args.quick) for name in names]
    Path(args.out).write_text("\n".join([header, *sections]))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
