"""Full-batch loss-and-gradient of UFLDL's 64-25-64 sparse autoencoder on 10,000 patches.

This is what L-BFGS calls 400 times in ``examples/sparse_autoencoder.yaml``.
Three implementations of the same objective (squared error + weight decay +
KL sparsity, sigmoid hidden and output), float64 as in UFLDL, 1 thread, each
in its own process: sweepnet's kernel, a vectorized NumPy version (UFLDL's
vectorized sparseAutoencoderCost) and PyTorch eager with autograd when torch
is installed. Prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

HIDDEN, VISIBLE, M = 25, 64, 10_000
RHO, LAM, BETA = 0.01, 1e-4, 3.0
PIN = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 0.9, size=(M, VISIBLE))
    r = np.sqrt(6 / (HIDDEN + VISIBLE + 1))
    W1, W2 = rng.uniform(-r, r, (HIDDEN, VISIBLE)), rng.uniform(-r, r, (VISIBLE, HIDDEN))
    return X, W1, W2


def _sweepnet():
    from kernels import hyper_vector, loss_and_grad, make_layout, make_workspace

    X, W1, W2 = _data()
    layout, _ = make_layout([VISIBLE, HIDDEN, VISIBLE], ["sigmoid", "sigmoid"])
    theta = np.r_[W1.ravel(), np.zeros(HIDDEN), W2.ravel(), np.zeros(VISIBLE)]
    hp = hyper_vector(l2=LAM, sparsity_beta=BETA, sparsity_rho=RHO)
    workspace = make_workspace(layout, M, np.float64)  # what the L-BFGS path reuses across calls
    return lambda: loss_and_grad(theta, layout, X, X, "quadratic", hp, workspace=workspace)[0]


def _numpy():
    X, W1, W2 = _data()
    Xt = np.ascontiguousarray(X.T)
    b1, b2 = np.zeros(HIDDEN), np.zeros(VISIBLE)

    def cost():
        a2 = 1 / (1 + np.exp(-(W1 @ Xt + b1[:, None])))
        a3 = 1 / (1 + np.exp(-(W2 @ a2 + b2[:, None])))
        rh = a2.mean(axis=1)
        J = (0.5 * ((a3 - Xt) ** 2).sum() / M + LAM / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
             + BETA * (RHO * np.log(RHO / rh) + (1 - RHO) * np.log((1 - RHO) / (1 - rh))).sum())
        d3 = (a3 - Xt) * a3 * (1 - a3)
        d2 = (W2.T @ d3 + BETA * (-RHO / rh + (1 - RHO) / (1 - rh))[:, None]) * a2 * (1 - a2)
        _ = (d2 @ Xt.T / M + LAM * W1, d3 @ a2.T / M + LAM * W2, d2.mean(axis=1), d3.mean(axis=1))
        return J
    return cost


def _torch():
    import torch

    torch.set_num_threads(1)
    X, W1, W2 = _data()
    Xt = torch.tensor(X)
    w1 = torch.tensor(W1, requires_grad=True)
    w2 = torch.tensor(W2, requires_grad=True)
    b1 = torch.zeros(HIDDEN, dtype=torch.float64, requires_grad=True)
    b2 = torch.zeros(VISIBLE, dtype=torch.float64, requires_grad=True)

    def cost():
        for p in (w1, w2, b1, b2):
            p.grad = None
        a2 = torch.sigmoid(Xt @ w1.T + b1)
        a3 = torch.sigmoid(a2 @ w2.T + b2)
        rh = a2.mean(dim=0)
        J = (0.5 * ((a3 - Xt) ** 2).sum() / M + LAM / 2 * ((w1 ** 2).sum() + (w2 ** 2).sum())
             + BETA * (RHO * torch.log(RHO / rh) + (1 - RHO) * torch.log((1 - RHO) / (1 - rh))).sum())
        J.backward()
        return float(J)
    return cost


def worker(name: str, repeats: int) -> dict:
    cost = {"sweepnet": _sweepnet, "numpy": _numpy, "torch": _torch}[name]()
    value = cost()  # compile / warm
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        cost()
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "J": float(value)}


def spawn(name: str, repeats: int) -> dict | None:
    env = {**os.environ, **PIN}
    result = subprocess.run([sys.executable, __file__, "--worker", name, str(repeats)], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None if "No module named 'torch'" in result.stderr else {"error": result.stderr[-500:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))))
        return
    rows = {name: spawn(name, 20) for name in ("sweepnet", "numpy", "torch")}
    base = rows["sweepnet"]["seconds"]
    print(f"64-25-64 sparse autoencoder, {M:,} patches, float64, 1 thread; best of 20 calls of loss+gradient.\n")
    print("| implementation | ms per call | sweepnet speed-up | J |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        if row is None:
            print(f"| {name} | not installed | | |")
        elif "error" in row:
            print(f"| {name} | failed: {row['error'][:80]} | | |")
        else:
            print(f"| {name} | {row['seconds'] * 1e3:.2f} | {row['seconds'] / base:.2f}x | {row['J']:.6f} |")


if __name__ == "__main__":
    main()
