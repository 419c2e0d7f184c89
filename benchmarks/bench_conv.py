"""Convolution + pooling at UFLDL's exercise shape, each implementation in its own process.

400 features of 8x8x3 over 64x64x3 images, sigmoid, mean pooling 19x19 -> 3x3 (float32).
Columns: sweepnet (kernels.conv.convolve_and_pool), a vectorised NumPy im2col version and,
if ``import torch`` works (optional ``bench`` extra), PyTorch conv2d + sigmoid + avg_pool2d.
Every worker runs in a fresh process with NUMBA_NUM_THREADS / OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS / MKL_NUM_THREADS pinned, so thread pools never mix. Each figure is the
best of ``--repeats`` timed runs after a warm-up (the machine is shared; best-of is the least
noisy estimate of what the code can do).

    .venv/bin/python benchmarks/bench_conv.py            # Markdown table on stdout
    .venv/bin/python benchmarks/bench_conv.py --memory-images 10000   # full memory check (~2.5 min)
    .venv/bin/python benchmarks/bench_conv.py --memory-images 0       # skip the memory check
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

H, C, P, K, POOL = 64, 3, 8, 400, 19
OH = H - P + 1
FLOP_PER_IMAGE = 2 * OH * OH * P * P * C * K


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, H, H, C), dtype=np.float32)
    W = (rng.standard_normal((K, P * P * C)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(K) * 0.1).astype(np.float32)
    return images, W, b


def _best(fn, repeats, cpu=None):
    """Best wall time of ``repeats`` runs; ``cpu`` (a list) receives CPU/wall of that run."""
    fn()  # warm-up: compile, allocate, fault pages in
    times = []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, used = min(times)
    if cpu is not None:
        cpu.append(used / wall)
    return wall


def _numpy_conv_pool(images, W, b, chunk=16):
    """im2col with sliding_window_view, one GEMM per chunk, sigmoid, reshape-mean pooling."""
    from numpy.lib.stride_tricks import sliding_window_view
    n_pool = OH // POOL
    out = np.empty((len(images), K, n_pool, n_pool), np.float32)
    for s in range(0, len(images), chunk):
        x = images[s:s + chunk]
        win = sliding_window_view(x, (P, P), axis=(1, 2))          # (n, OH, OW, C, P, P)
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, P * P * C)  # (row, col, channel)
        z = cols @ W.T + b
        a = 1.0 / (1.0 + np.exp(-z))
        a = a.reshape(len(x), n_pool, POOL, n_pool, POOL, K).mean(axis=(2, 4))
        out[s:s + len(x)] = a.transpose(0, 3, 1, 2)
    return out


def _torch_conv_pool(images, W, b):
    import torch
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    w = torch.from_numpy(W.reshape(K, P, P, C)).permute(0, 3, 1, 2).contiguous()
    bt = torch.from_numpy(b)

    def run():
        with torch.no_grad():
            for s in range(0, x.shape[0], 16):
                z = torch.nn.functional.conv2d(x[s:s + 16], w, bt)
                torch.nn.functional.avg_pool2d(torch.sigmoid(z), POOL)
    return run


def worker(kind, n, repeats):
    """Run one measurement in this process and return a dict."""
    if kind == "gemm":
        a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
        square = 2 * 2048 ** 3 / _best(lambda: a @ a, repeats)
        images, W, b = _data(1)
        cols = np.random.default_rng(1).random((OH * OH, P * P * C), dtype=np.float32)
        conv = FLOP_PER_IMAGE / _best(lambda: W @ cols.T, repeats * 5)
        return {"gemm_square_gflops": square / 1e9, "gemm_conv_shape_gflops": conv / 1e9}
    if kind == "pool":
        from kernels import pool2d
        x = np.random.default_rng(0).random((n, K, OH, OH), dtype=np.float32)
        t = _best(lambda: pool2d(x, POOL), repeats)
        return {"pool_gbytes_per_s": x.nbytes / t / 1e9}
    if kind == "memory":
        from kernels import convolve_and_pool
        images, W, b = _data(n)
        t0 = time.perf_counter()
        out = convolve_and_pool(images, W, b, POOL)
        return {"images": n, "seconds": time.perf_counter() - t0, "out_shape": list(out.shape),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    images, W, b = _data(n)
    if kind == "sweepnet":
        from kernels import convolve_and_pool
        fn = lambda: convolve_and_pool(images, W, b, POOL)  # noqa: E731
    elif kind == "numpy":
        fn = lambda: _numpy_conv_pool(images, W, b)  # noqa: E731
    elif kind == "torch":
        try:
            fn = _torch_conv_pool(images, W, b)
        except ImportError:
            return {"skipped": "torch not installed (pip install '.[bench]')"}
    else:
        raise ValueError(f"unknown worker kind {kind!r}")
    cpu = []
    t = _best(fn, repeats, cpu)
    # CPU/wall near the thread count means the threads really ran; on a shared machine it shows
    # how many cores this process actually got
    return {"images_per_s": n / t, "gflops": FLOP_PER_IMAGE * n / t / 1e9, "cpu_per_wall": cpu[0]}


def spawn(kind, threads, n, repeats):
    """Run ``worker`` in a fresh interpreter with every thread pool pinned to ``threads``."""
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if kind == "sweepnet" and threads > 1:
        env["OPENBLAS_NUM_THREADS"] = "1"  # Numba threads each call single-threaded BLAS
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--n", str(n),
           "--repeats", str(repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(value, spec=".1f"):
    return "skipped" if value is None else format(value, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=64, help="images per timed run (default 64)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all workers")
    ap.add_argument("--memory-images", type=int, default=2000,
                    help="images for the peak-memory run; < 10000 is extrapolated linearly")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.repeats)))
        return
    # rounds interleave every worker so load from other processes hits all columns alike;
    # each figure is the best over rounds (and over repeats inside a worker)
    best = {}
    for _ in range(args.rounds):
        for kind, threads in [("gemm", 1), ("sweepnet", 1), ("numpy", 1), ("torch", 1),
                              ("gemm", 2), ("sweepnet", 2), ("numpy", 2), ("torch", 2)]:
            r = spawn(kind, threads, args.n if kind != "gemm" else 0, args.repeats)
            old = best.setdefault((kind, threads), r)
            best[(kind, threads)] = {k: max(v, old.get(k, v)) if isinstance(v, float) else v
                                     for k, v in r.items()}
    _print_table(best, spawn("pool", 1, 16, args.repeats))
    _memory_report(args.memory_images)


def _print_table(best, pool):
    gemm1, gemm2 = best[("gemm", 1)], best[("gemm", 2)]
    print("| implementation | threads | images/s | GF/s | % of numpy sgemm (same threads) | CPU/wall |")
    print("|---|---|---|---|---|---|")
    for (kind, threads), r in best.items():
        if kind == "gemm":
            continue
        gemm = (gemm1 if threads == 1 else gemm2)["gemm_square_gflops"]
        pct = None if "gflops" not in r else 100 * r["gflops"] / gemm
        print(f"| {kind} | {threads} | {_fmt(r.get('images_per_s'))} | {_fmt(r.get('gflops'))} | "
              f"{_fmt(pct, '.0f')} | {_fmt(r.get('cpu_per_wall'), '.2f')} |")
    print()
    print(f"numpy sgemm 2048x2048: {gemm1['gemm_square_gflops']:.1f} GF/s on 1 thread, "
          f"{gemm2['gemm_square_gflops']:.1f} on 2; conv-shaped (400x192 @ 192x3249): "
          f"{gemm1['gemm_conv_shape_gflops']:.1f} GF/s on 1 thread")
    torch1 = best[("torch", 1)].get("images_per_s")
    if torch1:
        print(f"sweepnet / PyTorch on 1 thread: {best[('sweepnet', 1)]['images_per_s'] / torch1:.2f}x")
    print(f"mean pooling 19x19 alone (kernels.pool.pool2d, 1 thread): "
          f"{pool['pool_gbytes_per_s']:.1f} GB/s read")


def _memory_report(n):
    if n <= 0:
        return
    big = spawn("memory", 2, n, 1)
    if n >= 10000:
        print(f"peak RSS, pooled features of {n} images 64x64x3 x 400 features (2 threads): "
              f"{big['peak_rss_mib']:.0f} MiB in {big['seconds']:.0f} s (measured)")
        return
    small = spawn("memory", 2, n // 2, 1)
    slope = (big["peak_rss_mib"] - small["peak_rss_mib"]) / (n - n // 2)
    extrapolated = big["peak_rss_mib"] + slope * (10000 - n)
    print(f"peak RSS (2 threads): {small['peak_rss_mib']:.0f} MiB for {n // 2} images, "
          f"{big['peak_rss_mib']:.0f} MiB for {n} images ({big['seconds']:.0f} s); "
          f"EXTRAPOLATED linearly to 10000 images: {extrapolated:.0f} MiB "
          f"(of which the float32 input images are {10000 * H * H * C * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
