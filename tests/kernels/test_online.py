"""The fused batch-1 driver (kernels/online.py) against the generic mini-batch driver, bit for bit.

``train_epochs`` hands batch-1 runs of small nets to ``_train_online``; each test forces the generic path by
calling ``kernels.train._train_epochs`` with the same arguments and compares parameters, optimiser state,
counters and epoch losses byte for byte. The naive NumPy reference check of batch 1 lives in
test_train.py (it now runs through the fused path).
"""

import itertools

import numpy as np
import pytest

from kernels.layout import make_layout
from kernels.losses import LOSS_CODES
from kernels.network import hyper_vector, train_epochs
from kernels.online import _train_online, supports_online
from kernels.optim import OPTIMIZER_CODES
from kernels.train import _train_epochs

DTYPES = [np.float32, np.float64]
M = 7
# (sizes, activations): hidden x output activations over 1-2 hidden layers, maxout and 1-unit layers included
NETS = [
    ((2, 2, 1), ("tanh", "tanh")),
    ((3, 4, 2), ("sigmoid", "sigmoid")),
    ((3, 4, 3), ("rectifier", "softmax")),
    ((3, 3, 2), ("maxout", "linear")),
    ((1, 1, 1), ("linear", "tanh")),
    ((4, 5, 3, 3), ("sigmoid", "maxout", "softmax")),
    ((2, 6, 4, 1), ("tanh", "rectifier", "sigmoid")),
]
LOSSES = ["quadratic", "cross_entropy", "absolute", "huber"]
OPTIMIZERS = {
    "sgd": dict(rate=0.05),
    "sgd_momentum": dict(rate=0.05, rate_annealing=1e-3, rate_decay=0.8, momentum_start=0.5, momentum_ramp=20,
                         momentum_stable=0.9, nesterov=1),
    "adadelta": dict(rho=0.95, epsilon=1e-6),
    "adam": dict(rate=0.01),
}
REGULARISERS = {"none": {}, "l1_l2_maxnorm": dict(l1=1e-3, l2=1e-2, max_w2=1.5)}


def _problem(sizes, acts, dtype, seed=3):
    layout, n_params = make_layout(sizes, acts)
    rng = np.random.default_rng(seed)
    params = (0.8 * rng.standard_normal(n_params)).astype(dtype)
    X = rng.standard_normal((M, sizes[0])).astype(dtype)
    if acts[-1] == "softmax":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], M)].astype(dtype)
    else:
        Y = rng.random((M, sizes[-1])).astype(dtype)
    return layout, params, X, Y


def _args(params, layout, X, Y, *, loss, optimizer, hp, drop, seed=11, epoch0=2, n_epochs=4, shuffle=True,
          batch_size=1):
    """Fresh copies of everything a driver mutates, in the driver's argument order."""
    params = params.copy()
    state, counters = np.zeros((2, params.shape[0]), params.dtype), np.zeros(2)
    n_hidden = max(int(layout[:-1, 3].sum()), 1)
    return (params, layout, X, Y, epoch0, n_epochs, batch_size, shuffle, LOSS_CODES[loss], hp,
            np.asarray(drop, np.float64), OPTIMIZER_CODES[optimizer], state, counters, np.uint64(seed),
            np.zeros(n_hidden), np.full(n_epochs, np.nan))


def _assert_same_run(args, kernel_a=_train_online, kernel_b=_train_epochs):
    """Run both drivers on copies of ``args``; every output must match byte for byte."""
    a, b = _args_copy(args), _args_copy(args)
    finished_a, finished_b = kernel_a(*a), kernel_b(*b)
    assert finished_a == finished_b
    for name, index in (("params", 0), ("state", 12), ("counters", 13), ("epoch_loss", 16)):
        assert a[index].tobytes() == b[index].tobytes(), f"{name} differs: {a[index]} vs {b[index]}"
    return finished_a, a


def _args_copy(args):
    return tuple(arg.copy() if isinstance(arg, np.ndarray) and arg.flags.writeable else arg for arg in args)


def _cases():
    for (sizes, acts), loss in itertools.product(NETS, LOSSES):
        if loss == "cross_entropy" and acts[-1] not in ("sigmoid", "softmax"):
            continue
        yield sizes, acts, loss


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", list(_cases()))
def test_fused_path_matches_generic_over_losses_and_dropout(sizes, acts, loss, dtype):
    layout, params, X, Y = _problem(sizes, acts, dtype)
    hp = hyper_vector(rate=0.05, huber_delta=0.3)
    assert supports_online(layout, hp, 1, M)
    for drop in ([0.0] * len(acts), [0.25] + [0.4] * (len(acts) - 1)):
        _assert_same_run(_args(params, layout, X, Y, loss=loss, optimizer="sgd", hp=hp, drop=drop))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("regulariser", sorted(REGULARISERS))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("net", range(len(NETS)))
def test_fused_path_matches_generic_over_optimisers_and_penalties(net, optimizer, regulariser, dtype):
    sizes, acts = NETS[net]
    layout, params, X, Y = _problem(sizes, acts, dtype, seed=net)
    hp = hyper_vector(**OPTIMIZERS[optimizer], **REGULARISERS[regulariser])
    loss = "cross_entropy" if acts[-1] in ("sigmoid", "softmax") else "quadratic"
    drop = [0.2] + [0.3] * (len(acts) - 1)
    _assert_same_run(_args(params, layout, X, Y, loss=loss, optimizer=optimizer.split("_")[0], hp=hp, drop=drop))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shuffle", [False, True])
def test_fused_path_matches_generic_without_shuffling_and_on_one_sample(shuffle, dtype):
    layout, params, X, Y = _problem(*NETS[1], dtype)
    hp = hyper_vector(rate=0.1, l2=1e-3)
    _assert_same_run(_args(params, layout, X, Y, loss="quadratic", optimizer="sgd", hp=hp, drop=[0.1, 0.2],
                           shuffle=shuffle))
    # one sample: any batch size is online
    assert supports_online(layout, hp, 16, 1)
    _assert_same_run(_args(params, layout, X[:1], Y[:1], loss="quadratic", optimizer="sgd", hp=hp, drop=[0.1, 0.2],
                           shuffle=shuffle, batch_size=16))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_diverging_run_stops_at_the_same_epoch(dtype):
    layout, n_params = make_layout((3, 4, 2), ("linear", "linear"))
    params = np.full(n_params, 0.1, dtype)
    X = np.random.default_rng(0).standard_normal((M, 3)).astype(dtype)
    Y = np.ones((M, 2), dtype)
    finished, run = _assert_same_run(_args(params, layout, X, Y, loss="quadratic", optimizer="sgd",
                                           hp=hyper_vector(rate=1e3), drop=[0.0, 0.0], n_epochs=300))
    assert finished < 300 and np.isnan(run[16][finished + 1:]).all()


def test_train_epochs_takes_the_fused_path_for_batch_1_and_resumes_in_blocks():
    layout, params, X, Y = _problem(*NETS[5], np.float32)
    hp, drop = hyper_vector(rho=0.95, epsilon=1e-6, l1=1e-4, max_w2=10.0), [0.2, 0.5, 0.0]
    generic = _args(params, layout, X, Y, loss="cross_entropy", optimizer="adadelta", hp=hp, drop=drop, epoch0=0,
                    n_epochs=5)
    _train_epochs(*generic)
    trained, state, counters = params.copy(), np.zeros((2, params.size), np.float32), np.zeros(2)
    losses = []
    for epoch0, n in [(0, 2), (2, 3)]:
        loss, finished = train_epochs(trained, layout, X, Y, state, counters, epoch0=epoch0, n_epochs=n,
                                      batch_size=1, loss="cross_entropy", optimizer="adadelta", hp=hp, drop=drop,
                                      seed=11)
        assert finished == n
        losses.append(loss)
    assert trained.tobytes() == generic[0].tobytes() and state.tobytes() == generic[12].tobytes()
    assert np.concatenate(losses).tobytes() == generic[16].tobytes()


def test_supports_online_falls_back_where_the_generic_path_differs():
    layout, _ = make_layout((2, 2, 1), ("tanh", "tanh"))
    hp = hyper_vector()
    assert supports_online(layout, hp, 1, 4)
    assert not supports_online(layout, hp, 2, 4)  # mini-batches
    assert not supports_online(layout, hyper_vector(sparsity_beta=3.0, sparsity_rho=0.1), 1, 4)  # KL sparsity
    big, _ = make_layout((64, 64, 10), ("sigmoid", "softmax"))  # 64 x 64 = 4096 multiply-adds: BLAS
    assert not supports_online(big, hp, 1, 4)
    with pytest.raises(ValueError, match="hidden layers only"):  # the generic backward has no maxout output
        make_layout((2, 3, 2), ("tanh", "maxout"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_cases_still_train_through_train_epochs(dtype):
    # KL sparsity at batch 1 goes to the generic driver: train_epochs must equal it exactly
    layout, params, X, Y = _problem((4, 3, 4), ("sigmoid", "sigmoid"), dtype)
    Y = X.copy()
    hp = hyper_vector(rate=0.1, sparsity_beta=0.5, sparsity_rho=0.1, sparsity_running=1)
    generic = _args(params, layout, X, Y, loss="quadratic", optimizer="sgd", hp=hp, drop=[0.0, 0.0], epoch0=0)
    _train_epochs(*generic)
    trained, state, counters, rho_run = params.copy(), np.zeros((2, params.size), dtype), np.zeros(2), np.zeros(3)
    loss, _ = train_epochs(trained, layout, X, Y, state, counters, epoch0=0, n_epochs=4, batch_size=1,
                           loss="quadratic", optimizer="sgd", hp=hp, drop=None, seed=11, rho_run=rho_run)
    assert trained.tobytes() == generic[0].tobytes() and loss.tobytes() == generic[16].tobytes()
    np.testing.assert_array_equal(rho_run, generic[15])
