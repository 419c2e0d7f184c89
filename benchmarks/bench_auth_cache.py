"""MLflow basic auth with and without ``auth_cache_ttl_seconds``: child-run-like request loops against real servers.

One "child" = create run + one ``log_batch`` (10 params, 50 metric steps) + terminate, as the pipeline user, the way
a sweep worker logs a trial. Each configuration gets its own ``mlflow server --workers 1 --app-name basic-auth`` on a
local PostgreSQL (``app.services``); the server's CPU seconds per request come from its process tree (psutil).
Prints a Markdown table.

    python benchmarks/bench_auth_cache.py [--children 40] [--writers 1,2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _mlflow_bench import auth_server, children_per_second, new_experiment  # noqa: E402


def measure(ttl: int, n_children: int, writers: list[int]) -> list[dict]:
    with auth_server(ttl) as (state, info, user):
        exp_id = new_experiment(info["tracking_uri"], f"auth-cache-{ttl}")
        return [{"ttl": ttl, **children_per_second(state, info["tracking_uri"], user, exp_id, n_children, n)}
                for n in writers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=40)
    parser.add_argument("--writers", default="1,2")
    args = parser.parse_args()
    writers = [int(w) for w in args.writers.split(",")]
    rows = [r for ttl in (0, 60) for r in measure(ttl, args.children, writers)]
    print("| auth_cache_ttl_seconds | writer processes | children | children/s | server CPU ms per request |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ttl']} | {r['writers']} | {r['children']} | {r['per_s']:.1f} | {r['cpu_ms_per_request']:.1f} |")


if __name__ == "__main__":
    main()
