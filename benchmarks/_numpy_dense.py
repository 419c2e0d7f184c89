"""Plain NumPy implementation of the benchmark runs (worker process; see bench_dense.py).

Straightforward vectorised mini-batch SGD in float32: one matrix product per
layer and direction, per-epoch shuffling, the same losses as the kernels.
Also measures the single-thread sgemm rate numpy reaches.
"""

import numpy as np

import common


def _act(name, z):
    if name == "rectifier":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def _act_grad(name, z, a, da):
    if name == "rectifier":
        return da * (z > 0)
    if name == "sigmoid":
        return da * a * (1 - a)
    if name == "tanh":
        return da * (1 - a * a)
    return da


def _step(weights, acts, loss, xb, yb, rate):
    """One SGD step on a batch; returns the batch's summed loss."""
    ins, zs, outs = [], [], []
    a = xb
    for (W, b), name in zip(weights, acts):
        ins.append(a)
        z = a @ W.T + b
        a = _act(name, z)
        zs.append(z)
        outs.append(a)
    m = xb.shape[0]
    if loss == "cross_entropy":
        total = -np.log(np.maximum((a * yb).sum(axis=1), 1e-30)).sum()
        delta = (a - yb) / m
    else:
        r = a - yb
        total = 0.5 * (r * r).sum()
        delta = _act_grad(acts[-1], zs[-1], a, r) / m
    for layer in range(len(weights) - 1, -1, -1):
        W, b = weights[layer]
        gW = delta.T @ ins[layer]
        gb = delta.sum(axis=0)
        if layer:
            delta = _act_grad(acts[layer - 1], zs[layer - 1], outs[layer - 1], delta @ W)
        W -= rate * gW
        b -= rate * gb
    return total


def run_case(case, X, Y):
    weights = [(W.copy(), b.copy()) for W, b in common.initial_weights(case["sizes"])]
    rng = np.random.default_rng(0)
    rate = np.float32(case["rate"])
    m, batch = X.shape[0], case["batch"]
    last = [np.nan]

    def epochs(n):
        for _ in range(n):
            order = rng.permutation(m)
            total = 0.0
            for start in range(0, m, batch):
                rows = order[start:start + batch]
                total += _step(weights, case["acts"], case["loss"], X[rows], Y[rows], rate)
            last[0] = total / m

    epochs(1 if case["data"] != "xor" else 10)
    return common.best_time(lambda: epochs(case["epochs"]), common.repeats_for(case)), last[0]


def gemm_rates():
    """Single-thread sgemm GF/s: a large square product and the 784-512-512-10 step's biggest shape."""
    return {"gemm_gflops": {"sgemm 2048^3": common.sgemm_rate(),
                            "sgemm 256x784 @ 784x512": common.sgemm_rate(256, 784, 512)},
            "numpy": np.__version__}


if __name__ == "__main__":
    common.worker_main(run_case, gemm_rates)
