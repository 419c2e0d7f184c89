"""Shared pieces of the dense-network benchmarks: cases, data, timing, subprocess workers, tables.

Every implementation runs the same cases (same data, same initial weights,
float32, plain SGD, per-epoch shuffling) in its own process with every thread
pool pinned to one thread, so BLAS/OpenMP/Numba/torch pools never compete.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
DTYPE = np.float32

# name, layer sizes, activations (hidden..., output), loss, data, batch, epochs per timing, rate
CASES = [
    dict(name="digits 64-100-10 b32", sizes=(64, 100, 10), acts=("rectifier", "softmax"), loss="cross_entropy",
         data="digits", batch=32, epochs=5, rate=0.05),
    dict(name="digits 64-100-10 b256", sizes=(64, 100, 10), acts=("rectifier", "softmax"), loss="cross_entropy",
         data="digits", batch=256, epochs=20, rate=0.2),
    dict(name="autoencoder 64-25-64 b1", sizes=(64, 25, 64), acts=("sigmoid", "sigmoid"), loss="quadratic",
         data="digits_ae", batch=1, epochs=2, rate=0.05),
    dict(name="autoencoder 64-25-64 b16", sizes=(64, 25, 64), acts=("sigmoid", "sigmoid"), loss="quadratic",
         data="digits_ae", batch=16, epochs=10, rate=0.5),
    dict(name="autoencoder 64-25-64 b128", sizes=(64, 25, 64), acts=("sigmoid", "sigmoid"), loss="quadratic",
         data="digits_ae", batch=128, epochs=40, rate=2.0),
    dict(name="784-512-512-10 b256", sizes=(784, 512, 512, 10), acts=("rectifier", "rectifier", "softmax"),
         loss="cross_entropy", data="random784", batch=256, epochs=2, rate=0.01),
    dict(name="XOR 2-2-1 b1 x10000 epochs", sizes=(2, 2, 1), acts=("tanh", "tanh"), loss="quadratic", data="xor",
         batch=1, epochs=10000, rate=0.05),
    dict(name="XOR 2-2-1 b4 x10000 epochs", sizes=(2, 2, 1), acts=("tanh", "tanh"), loss="quadratic", data="xor",
         batch=4, epochs=10000, rate=0.2),
]


def thread_env(extra=None):
    """The current environment with every thread pool pinned to one thread."""
    env = dict(os.environ)
    env.update({name: "1" for name in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def load_data(kind):
    """(X, Y) float32 for a case's data set."""
    if kind in ("digits", "digits_ae"):
        from sklearn.datasets import load_digits
        digits = load_digits()
        X = (digits.data[:1347] / 16.0).astype(DTYPE)  # the train split of examples/digits.yaml
        if kind == "digits_ae":
            return X, X.copy()
        return X, np.eye(10, dtype=DTYPE)[digits.target[:1347]]
    if kind == "random784":
        rng = np.random.default_rng(784)
        X = rng.random((2048, 784), dtype=DTYPE)
        return X, np.eye(10, dtype=DTYPE)[rng.integers(0, 10, 2048)]
    if kind == "xor":
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], DTYPE)
        return X, np.array([[-1], [1], [1], [-1]], DTYPE)
    raise ValueError(f"unknown data {kind!r}")


def initial_weights(sizes, seed=0):
    """[(W of shape (n_out, n_in), b of shape (n_out,))] float32, Glorot-uniform, shared by all implementations."""
    rng = np.random.default_rng(seed)
    out = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        r = np.sqrt(6.0 / (n_in + n_out))
        out.append((rng.uniform(-r, r, (n_out, n_in)).astype(DTYPE), np.zeros(n_out, DTYPE)))
    return out


def step_flops(sizes, batch):
    """Multiply-add flops (2 per MAC) of one training step: forward, weight gradients, input gradients."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * batch * (2 * sum(macs) + sum(macs[1:]))


def best_time(run, repeats):
    """Best of ``repeats`` calls of ``run()``: dict(cpu=process CPU seconds, wall=wall seconds).

    On a shared machine the wall time of a one-thread process includes the
    time it waits for a core; its CPU time does not, so the CPU minimum is the
    better estimate of the undisturbed run (and equals the wall on an idle core).
    """
    best = dict(cpu=np.inf, wall=np.inf)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best["cpu"] = min(best["cpu"], time.process_time() - cpu)
        best["wall"] = min(best["wall"], time.perf_counter() - wall)
    return best


def repeats_for(case):
    return 2 if case["data"] == "xor" else (3 if case["batch"] == 1 else 5)


def sgemm_rate(m=2048, k=2048, n=2048):
    """Single-thread float32 GEMM GF/s numpy reaches right now (best of 3)."""
    rng = np.random.default_rng(0)
    A, B = rng.random((m, k), dtype=DTYPE), rng.random((k, n), dtype=DTYPE)
    C = np.empty((m, n), DTYPE)
    np.dot(A, B, C)
    reps = max(1, int(1e10 / (2 * m * k * n)))
    seconds = best_time(lambda: [np.dot(A, B, C) for _ in range(reps)], 3)["cpu"] / reps
    return 2 * m * k * n / seconds / 1e9


def worker_main(run_case, extra=None):
    """Entry point of a worker process: time every case, print one JSON line.

    Right before the 784-512-512-10 case the worker also measures numpy's
    sgemm rate, so the GEMM share compares rates taken under the same load.
    """
    results = {}
    for case in CASES:
        X, Y = load_data(case["data"])
        entry = {}
        if case["data"] == "random784":
            entry["sgemm_gflops"] = sgemm_rate()
        best, final_loss = run_case(case, X, Y)
        results[case["name"]] = dict(entry, seconds=best["cpu"], wall=best["wall"], final_loss=float(final_loss))
    results.update(extra() if extra else {})
    print(json.dumps(results))


def run_worker(script, args=(), env_extra=None, timeout=3600):
    """Run a worker script in a fresh, thread-pinned process; return its JSON (or None with the error)."""
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                          env=thread_env(env_extra), cwd=ROOT, timeout=timeout)
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1]), None


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
