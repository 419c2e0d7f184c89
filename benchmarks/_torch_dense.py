"""PyTorch eager implementation of the benchmark runs (worker process; see bench_dense.py).

Idiomatic eager training: nn.Linear layers, torch.optim.SGD, zero_grad /
backward / step per mini-batch, torch.randperm shuffling, one intra-op thread.
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
            layers.append(_ACTS[name]())
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
            total = 0.0
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
                total += loss.item() * rows.shape[0]
            last[0] = total / m

    epochs(1 if case["data"] != "xor" else 10)
    return common.best_time(lambda: epochs(case["epochs"]), common.repeats_for(case)), last[0]


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    common.worker_main(run_case, lambda: {"torch": torch.__version__})
