"""Dense-network benchmark: sweepnet kernels vs plain NumPy vs PyTorch eager (float32, 1 thread).

Run from the repository root (``make bench``)::

    .venv/bin/python benchmarks/bench_dense.py

Each implementation runs in its own process with OMP/OpenBLAS/MKL/Numba
threads pinned to 1 and executes the same cases (common.CASES: same data,
initial weights, batch, epochs, plain SGD with per-epoch shuffling); the best
of a few repeats is reported. PyTorch is optional (extra ``bench``); without
it that column says "not installed". Compile time is measured cold (fresh
NUMBA_CACHE_DIR) and cached, in fresh processes. The Markdown report goes to
stdout and to benchmarks/results/dense.md. Not a test: nothing is asserted.
Options: ``--rounds N`` (default 2) interleaved rounds, best time kept; ``--quick`` is one round.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# (case-name prefix, minimum speed-up over torch) from issue 2
TARGETS = {"digits 64-100-10 b32": 5.0, "autoencoder 64-25-64 b16": 5.0, "autoencoder 64-25-64 b1": 50.0,
           "digits 64-100-10 b256": 2.5, "784-512-512-10 b256": 1.1}
XOR_TARGET_S = 0.010
GEMM_SHARE_TARGET = 0.85


# --------------------------------------------------------------------------- sweepnet worker
def _sweepnet_case(case, X, Y):
    from kernels import bias_view, hyper_vector, make_layout, train_epochs, weight_view

    layout, n_params = make_layout(case["sizes"], case["acts"])
    params = np.zeros(n_params, common.DTYPE)
    for layer, (W, b) in enumerate(common.initial_weights(case["sizes"])):
        weight_view(params, layout, layer)[:] = W
        bias_view(params, layout, layer)[:] = b
    state, counters = np.zeros((2, n_params), common.DTYPE), np.zeros(2)
    hp = hyper_vector(rate=case["rate"])
    epoch = [0]
    last = [np.nan]

    def epochs(n):
        loss, finished = train_epochs(params, layout, X, Y, state, counters, epoch0=epoch[0], n_epochs=n,
                                      batch_size=case["batch"], loss=case["loss"], optimizer="sgd", hp=hp,
                                      drop=None, seed=0, shuffle=True)
        epoch[0] += n
        last[0] = loss[finished - 1]

    epochs(1 if case["data"] != "xor" else 10)
    return common.best_time(lambda: epochs(case["epochs"]), common.repeats_for(case)), last[0]


def _compile_probe():
    """Wall time to import the kernels and make the first float32 calls (cold or cached by NUMBA_CACHE_DIR)."""
    start = time.perf_counter()
    from kernels import forward  # noqa: F401
    imported = time.perf_counter()
    case = common.CASES[0]
    X, Y = common.load_data(case["data"])
    loaded = time.perf_counter()
    _sweepnet_case(dict(case, epochs=1), X[:64], Y[:64])
    trained = time.perf_counter()
    from kernels import make_layout
    layout, n_params = make_layout(case["sizes"], case["acts"])
    forward(np.zeros(n_params, common.DTYPE), layout, X[:8])
    done = time.perf_counter()
    print(json.dumps(dict(import_s=imported - start, train_epochs_s=trained - loaded, forward_s=done - trained,
                          total_s=done - start - (loaded - imported))))


# --------------------------------------------------------------------------- report
def _fmt_time(seconds):
    return f"{seconds * 1e3:.3g} ms" if seconds < 10 else f"{seconds:.3g} s"


def _case_rows(results):
    rows = []
    for case in common.CASES:
        name = case["name"]
        entries = {impl: (res or {}).get(name, {}) for impl, res in results.items()}
        timings = {impl: entry.get("seconds") for impl, entry in entries.items()}
        ours = timings["sweepnet"]
        m = 4 if case["data"] == "xor" else (1347 if case["data"].startswith("digits") else 2048)
        steps = case["epochs"] * -(-m // case["batch"])
        row = [name, f"{case['epochs']}"]
        for impl in ("sweepnet", "numpy", "torch"):
            t = timings[impl]
            if (results[impl] or {}).get("not_installed"):
                row.append("not installed")
            else:
                row.append(f"{_fmt_time(t)} ({t / steps * 1e6:.3g} µs/step)" if t else "error")
        for impl in ("numpy", "torch"):
            row.append(f"{timings[impl] / ours:.2f}×" if ours and timings[impl] else "–")
        row.append(_fmt_time(entries["sweepnet"]["wall"]) if ours else "–")
        if case["data"] == "xor":
            goal, met = f"≤ {XOR_TARGET_S * 1e3:.0f} ms", ours is not None and ours <= XOR_TARGET_S
        elif name in TARGETS:
            goal = f"≥ {TARGETS[name]:g}× torch"
            met = bool(ours and timings["torch"] and timings["torch"] / ours >= TARGETS[name])
        else:
            goal, met = "", None
        row += [goal, "" if met is None else ("yes" if met else "**no**")]
        losses = [entry.get("final_loss") for entry in entries.values()]
        row.append(" / ".join("–" if v is None else f"{v:.3g}" for v in losses))
        rows.append(row)
    return rows


def _gemm_rows(results):
    rows = [[f"numpy {name}", f"{rate:.1f}", "", ""] for name, rate in results["numpy"]["gemm_gflops"].items()]
    case = next(c for c in common.CASES if c["data"] == "random784")
    flops = common.step_flops(case["sizes"], case["batch"]) * case["epochs"] * (2048 // case["batch"])
    for impl, res in results.items():
        if res and case["name"] in res:
            entry = res[case["name"]]
            rate = flops / entry["seconds"] / 1e9
            rows.append([f"{impl} 784-512-512-10 b256 training step", f"{rate:.1f}",
                         f"{entry['sgemm_gflops']:.1f}", f"{rate / entry['sgemm_gflops']:.0%}"])
    return rows


def _merge(runs):
    """Best (minimum) time per case over interleaved rounds; None if the worker never ran."""
    ok = [r for r in runs if r]
    if not ok or ok[0].get("not_installed"):
        return ok[0] if ok else None
    merged = dict(ok[0])
    for case in common.CASES:
        name = case["name"]
        merged[name] = min((r[name] for r in ok), key=lambda entry: entry["seconds"])
    return merged


def main(rounds):
    load_before = os.getloadavg()
    runs = {"sweepnet": [], "numpy": [], "torch": []}
    errors = {}
    scripts = {"sweepnet": ("bench_dense.py", ["--worker"]), "numpy": ("_numpy_dense.py", []),
               "torch": ("_torch_dense.py", [])}
    for _ in range(rounds):  # interleaved, so a burst of load on the shared machine hits every column
        for impl, (script, args) in scripts.items():
            if errors.get(impl) or (runs[impl] and (runs[impl][0] or {}).get("not_installed")):
                continue
            result, err = common.run_worker(script, args)
            runs[impl].append(result)
            if err:
                errors[impl] = err
    results = {impl: _merge(r) for impl, r in runs.items()}
    compile_runs = []
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        for _ in ("cold", "cached"):
            compile_runs.append(common.run_worker("bench_dense.py", ["--compile-probe"], {"NUMBA_CACHE_DIR": cache})[0])
    torch_version = (results["torch"] or {}).get("torch", "not installed")
    lines = [
        "# Dense-network benchmark (float32, 1 thread, each implementation in its own process)",
        "",
        f"Python {platform.python_version()}, numpy {results['numpy']['numpy'] if results['numpy'] else '?'}, "
        f"torch {torch_version}; {os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}. Each time is the process CPU time of the whole run (XOR: all 10,000 "
        f"epochs), best over {rounds} interleaved rounds of 2-5 repeats; one thread, so it is the wall time on an "
        "idle core. Speed-ups and targets use these times; the sweepnet wall column is the best wall time seen. "
        "PyTorch runs eager nn.Linear + torch.optim.SGD with zero_grad(set_to_none=True) and keeps each step's "
        "loss as a tensor, read once per epoch (benchmarks/_torch_dense.py); NumPy is plain vectorised float32 "
        "mini-batch SGD (benchmarks/_numpy_dense.py).",
        "",
        common.markdown_table(["case", "epochs", "sweepnet", "numpy", "torch eager", "speed-up vs numpy",
                               "speed-up vs torch", "sweepnet wall", "target", "met", "final loss (s / n / t)"],
                              _case_rows(results)),
    ]
    if results["numpy"]:
        lines += ["", "GEMM rates: the share compares each training step with numpy's sgemm 2048^3 measured in the "
                  "same process right before that case.", "",
                  common.markdown_table(["GEMM", "GF/s", "numpy sgemm GF/s then", "share"], _gemm_rows(results))]
    rows = [[label, *(f"{run[k]:.2f} s" if run else "error" for k in ("import_s", "train_epochs_s", "forward_s",
                                                                         "total_s"))]
            for label, run in zip(("cold (fresh NUMBA_CACHE_DIR)", "cached"), compile_runs)]
    lines += ["", common.markdown_table(["compile", "import kernels", "first train_epochs (float32)",
                                         "first forward", "total"], rows)]
    if errors:
        lines += ["", "Worker errors (torch missing means the optional extra `bench` is not installed):", ""]
        lines += [f"- {impl}: {err}" for impl, err in errors.items()]
    report = "\n".join(lines) + "\n"
    print(report)
    out = common.HERE / "results" / "dense.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report, encoding="utf-8")


def _parse_args():
    parser = argparse.ArgumentParser(description="Dense-network benchmark: sweepnet vs NumPy vs PyTorch eager.")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best time is kept (default 2)")
    parser.add_argument("--quick", action="store_true", help="one round (same cases, noisier on a loaded machine)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    args = _parse_args()
    if args.worker:
        common.worker_main(_sweepnet_case)
    elif args.compile_probe:
        _compile_probe()
    else:
        main(1 if args.quick else args.rounds)
