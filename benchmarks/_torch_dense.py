"""PyTorch eager implementation of the benchmark runs (worker process; see bench_dense.py).

Idiomatic eager training, set up as fast as eager PyTorch goes on one CPU
thread: nn.Linear layers (row-major weights, PyTorch's own layout), plain
torch.optim.SGD (its default per-parameter update measured no slower than
``foreach=True`` for nets this small), ``zero_grad(set_to_none=True)``, an
in-place ReLU, torch.randperm shuffling, one intra-op and one inter-op thread
like the other columns. The loss stays a tensor: each step keeps its detached
batch loss, and the epoch's mean is computed and read once per epoch (no
per-step ``.item()``).
"""

import json
import sys

import numpy as np

import common

try:
    import torch
    from torch import nn
except ImportError:  # the optional extra `bench` is not installed
    print(json.dumps({"not_installed": True}))
    sys.exit(0)

_ACTS = {"rectifier": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _model(case):
    layers = []
    for (W, b), name in zip(common.initial_weights(case["sizes"]), case["acts"]):
        linear = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if name in _ACTS:
            layers.append(_ACTS[name](inplace=True) if name == "rectifier" else _ACTS[name]())
    return nn.Sequential(*layers)  # softmax is folded into cross_entropy


def run_case(case, X, Y):
    torch.manual_seed(0)
    model = _model(case)
    optimizer = torch.optim.SGD(model.parameters(), lr=case["rate"])
    X, Y = torch.from_numpy(X), torch.from_numpy(Y)
    labels = Y.argmax(dim=1)
    m, batch = X.shape[0], case["batch"]
    cross_entropy = case["loss"] == "cross_entropy"
    last = [np.nan]

    def epochs(n):
        for _ in range(n):
            order = torch.randperm(m)
            losses = []
            for start in range(0, m, batch):
                rows = order[start:start + batch]
                out = model(X[rows])
                if cross_entropy:
                    loss = nn.functional.cross_entropy(out, labels[rows])
                else:
                    loss = 0.5 * ((out - Y[rows]) ** 2).sum(dim=1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())  # stays a tensor: no .item() per step
            weights = torch.full((len(losses),), float(batch), dtype=X.dtype)
            weights[-1] = m - batch * (len(losses) - 1)  # the last batch may be short
            last[0] = torch.stack(losses).dot(weights).item() / m  # one read per epoch

    epochs(1 if case["data"] != "xor" else 10)
    return common.best_time(lambda: epochs(case["epochs"]), common.repeats_for(case)), last[0]


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    common.worker_main(run_case, lambda: {"torch": torch.__version__})
