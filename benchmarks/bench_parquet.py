"""Parquet patch datasets: patches read per second into one contiguous array.

For each dataset size, writes 8x8 grey patches sampled from the scikit-image photos
(zstd, the CLI's default row-group size) and measures, best of ``--repeats``:

- ``read_pixels``: the whole dataset into one contiguous float32 array
  (a zero-copy view when the file has a single row group, else one concatenation);
- ``iter_shards``: streaming row group by row group (zero-copy views, nothing kept);
- ``load_data``: the training path (float64 writable copy + digest of the file).

Reference: ``np.copyto`` bandwidth on a 256 MB array in the same process. Prints a
Markdown table for BENCHMARKS.md. Usage::

    python benchmarks/bench_parquet.py [--sizes 10000,100000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def memcopy_gbps(repeats: int, nbytes: int = 256 * 2**20) -> float:
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch: page faults are not bandwidth
    return nbytes / best_of(lambda: np.copyto(dst, src), max(repeats, 5)) / 1e9


def bench_size(n: int, folder: Path, repeats: int) -> dict:
    from pipeline.datasets import iter_shards, load_data, read_pixels, write_patches

    path = folder / f"patches_{n}.parquet"
    start = time.perf_counter()
    write_patches(path, "skimage-grey", size=8, count=n, seed=0)
    write_s = time.perf_counter() - start
    decoded = n * 64 * 4

    def stream():
        for _, shard in iter_shards(path):
            shard.sum()  # touch the data so it is really decoded and read

    read_s = best_of(lambda: read_pixels(path), repeats)
    stream_s = best_of(stream, repeats)
    load_s = best_of(lambda: load_data({"source": str(path)}), repeats)
    import pyarrow.parquet as pq

    return {"n": n, "groups": pq.ParquetFile(path).num_row_groups, "mb": path.stat().st_size / 1e6,
            "write_s": write_s, "read_s": read_s, "stream_s": stream_s, "load_s": load_s,
            "decoded_gb": decoded / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bandwidth = memcopy_gbps(args.repeats)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(bench_size(n, Path(tmp), args.repeats))
    print(f"Parquet patch reads: 8x8 grey float32 patches, zstd, 16384 rows per row group; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, pyarrow "
          f"{__import__('pyarrow').__version__}. Memory copy (np.copyto, 256 MB): {bandwidth:.1f} GB/s.\n")
    print("| patches | row groups | file MB | MB decoded | write s | read_pixels patches/s | read GB/s "
          "(% of memcpy) | iter_shards patches/s | load_data (float64) patches/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gbps = r["decoded_gb"] / r["read_s"]
        print(f"| {r['n']:,} | {r['groups']} | {r['mb']:.1f} | {r['decoded_gb'] * 1e3:.0f} | {r['write_s']:.2f} "
              f"| {r['n'] / r['read_s']:,.0f} | {gbps:.2f} ({100 * gbps / bandwidth:.0f}%) "
              f"| {r['n'] / r['stream_s']:,.0f} | {r['n'] / r['load_s']:,.0f} |")


if __name__ == "__main__":
    main()
