"""train_epochs: purity, bit-identical reproducibility, divergence reporting, batch shapes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import naive_dense as naive
from kernels.layout import make_layout, weight_view
from kernels.network import hyper_vector, train_epochs

REPO = Path(__file__).resolve().parents[2]
SIZES, ACTS = (4, 6, 5, 3), ("rectifier", "tanh", "softmax")
M = 10


def _problem(dtype=np.float64):
    layout, n_params = make_layout(SIZES, ACTS)
    rng = np.random.default_rng(42)
    params = (0.5 * rng.standard_normal(n_params)).astype(dtype)
    X = rng.standard_normal((M, 4)).astype(dtype)
    Y = np.eye(3)[rng.integers(0, 3, M)].astype(dtype)
    return layout, params, X, Y


def _train(params, layout, X, Y, seed=1, n_epochs=5, batch_size=3, shuffle=True, optimizer="adadelta", **hp):
    params = params.copy()
    state, counters = np.zeros((2, params.shape[0]), params.dtype), np.zeros(2)
    hp = hyper_vector(**(hp or dict(rho=0.95, epsilon=1e-6, l1=1e-4, max_w2=10.0)))
    epoch_loss, finished = train_epochs(params, layout, X, Y, state, counters, epoch0=0, n_epochs=n_epochs,
                                        batch_size=batch_size, loss="cross_entropy", optimizer=optimizer,
                                        hp=hp, drop=[0.2, 0.5, 0.0], seed=seed, shuffle=shuffle)
    return params, epoch_loss, finished


# Run in a fresh interpreter: the same problem built from the same seeds, trained the same way.
SUBPROCESS_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
import test_train as t
layout, params, X, Y = t._problem(np.{dtype})
params, loss, finished = t._train(params, layout, X, Y)
print(json.dumps({{"params": params.tobytes().hex(), "loss": loss.tobytes().hex(), "finished": finished}}))
"""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inputs_are_never_mutated(dtype):
    layout, params, X, Y = _problem(dtype)
    before = [a.copy() for a in (params, X, Y, layout)]
    hp = hyper_vector(rate=0.1)
    hp_before = hp.copy()
    state, counters = np.zeros((2, params.shape[0]), dtype), np.zeros(2)
    trained = params.copy()
    train_epochs(trained, layout, X, Y, state, counters, epoch0=0, n_epochs=3, batch_size=4, loss="cross_entropy",
                 optimizer="sgd", hp=hp, drop=[0.5, 0.5, 0.5], seed=3)
    for a, b in zip((params, X, Y, layout), before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(hp, hp_before)
    assert not np.array_equal(trained, params)  # training did happen, on the copy


def test_converted_inputs_are_not_mutated_either():
    layout, params, X, Y = _problem()
    X32, Y_int = X.astype(np.float32), Y.astype(np.int64)  # converted to float64 by the wrapper
    before = X32.copy(), Y_int.copy()
    _train(params, layout, X32, Y_int)
    np.testing.assert_array_equal(X32, before[0])
    np.testing.assert_array_equal(Y_int, before[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_seed_is_bit_identical_and_other_seeds_differ(dtype):
    layout, params, X, Y = _problem(dtype)
    a, loss_a, _ = _train(params, layout, X, Y, seed=1)
    b, loss_b, _ = _train(params, layout, X, Y, seed=1)
    c, _, _ = _train(params, layout, X, Y, seed=2)
    assert a.tobytes() == b.tobytes() and loss_a.tobytes() == loss_b.tobytes()
    assert not np.array_equal(a, c)


def test_bit_identical_in_a_fresh_process():
    layout, params, X, Y = _problem(np.float32)
    here, loss, finished = _train(params, layout, X, Y)
    script = SUBPROCESS_SCRIPT.format(tests=str(Path(__file__).parent), dtype="float32")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          check=True)
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there["finished"] == finished == 5
    assert there["params"] == here.tobytes().hex()
    assert there["loss"] == loss.tobytes().hex()


def test_resuming_in_blocks_equals_one_call():
    # The Python layer calls the driver between scoring events: epochs [0, 2) then [2, 5) must equal [0, 5).
    layout, params, X, Y = _problem()
    whole, whole_loss, _ = _train(params, layout, X, Y, n_epochs=5)
    state, counters, split = np.zeros((2, params.shape[0])), np.zeros(2), params.copy()
    hp = hyper_vector(rho=0.95, epsilon=1e-6, l1=1e-4, max_w2=10.0)
    losses = []
    for epoch0, n in [(0, 2), (2, 3)]:
        loss, _ = train_epochs(split, layout, X, Y, state, counters, epoch0=epoch0, n_epochs=n, batch_size=3,
                               loss="cross_entropy", optimizer="adadelta", hp=hp, drop=[0.2, 0.5, 0.0], seed=1)
        losses.append(loss)
    assert split.tobytes() == whole.tobytes()
    np.testing.assert_array_equal(np.concatenate(losses), whole_loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_diverging_run_stops_early(dtype):
    _, _, X, _ = _problem(dtype)
    layout, n_params = make_layout((4, 6, 3), ("linear", "linear"))  # unbounded, so rate 1e3 blows up
    params = np.full(n_params, 0.1, dtype)
    Y = np.ones((M, 3), dtype)
    state, counters = np.zeros((2, params.shape[0]), dtype), np.zeros(2)
    epoch_loss, finished = train_epochs(params, layout, X, Y, state, counters, epoch0=0, n_epochs=500,
                                        batch_size=1, loss="quadratic", optimizer="sgd", hp=hyper_vector(rate=1e3),
                                        drop=None, seed=0)
    assert finished < 500
    assert np.isnan(epoch_loss[finished + 1:]).all()  # never reached
    assert not (np.isfinite(epoch_loss[finished]) and np.isfinite(params).all())  # the reported epoch is bad


@pytest.mark.parametrize("batch_size", [1, 4, M, M + 5])  # online, remainder (10 = 2 * 4 + 2), full, oversize
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_sizes_with_dropout_match_numpy(batch_size, shuffle):
    layout, params, X, Y = _problem()
    drop = [0.2, 0.5, 0.0]
    state, counters = np.zeros((2, params.shape[0])), np.zeros(2)
    trained = params.copy()
    epoch_loss, finished = train_epochs(trained, layout, X, Y, state, counters, epoch0=0, n_epochs=3,
                                        batch_size=batch_size, loss="cross_entropy", optimizer="sgd",
                                        hp=hyper_vector(rate=0.1, l2=1e-3), drop=drop, seed=5, shuffle=shuffle)
    assert finished == 3 and np.isfinite(trained).all()
    steps_per_epoch = -(-M // min(batch_size, M))
    np.testing.assert_array_equal(counters, [3 * M, 3 * steps_per_epoch])
    if not shuffle:
        want, want_loss = naive.train(params, layout, X, Y, n_epochs=3, batch_size=min(batch_size, M),
                                      loss="cross_entropy", rate=0.1, l2=1e-3, drop=drop, seed=5)
        np.testing.assert_allclose(trained, want, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(epoch_loss, want_loss, rtol=1e-11)
    elif batch_size < M:
        unshuffled, _, _ = _train(params, layout, X, Y, seed=5, n_epochs=3, batch_size=batch_size, shuffle=False,
                                  optimizer="sgd", rate=0.1, l2=1e-3)
        assert not np.array_equal(trained, unshuffled)


def test_max_norm_holds_after_training():
    layout, params, X, Y = _problem()
    trained, _, _ = _train(params, layout, X, Y, optimizer="sgd", rate=0.5, max_w2=0.3)
    for layer in range(3):
        assert ((weight_view(trained, layout, layer) ** 2).sum(axis=1) <= 0.3 * (1 + 1e-12)).all()


RESUME_HP = {
    "sgd": dict(rate=0.05, rate_annealing=1e-3, momentum_start=0.1, momentum_ramp=25.0, momentum_stable=0.9,
                nesterov=1.0, l2=1e-3),
    "adam": dict(rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8),
    "adadelta": dict(rho=0.95, epsilon=1e-6, max_w2=10.0),
}


@pytest.mark.parametrize("optimizer", sorted(RESUME_HP))
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_run_stopped_and_resumed_from_saved_state_equals_one_call(tmp_path, optimizer, batch_size, dtype):
    # What a checkpoint carries between processes: params, optimiser state and (samples, steps) counters,
    # through an .npz; the shuffle and dropout streams are keyed by (seed, epoch), so nothing else. The momentum
    # ramp (25 samples) ends and Adam's bias correction moves during the first leg, so the counters matter.
    layout, params, X, Y = _problem(dtype)
    hp = hyper_vector(**RESUME_HP[optimizer])
    kw = dict(batch_size=batch_size, loss="cross_entropy", optimizer=optimizer, hp=hp, drop=[0.2, 0.5, 0.0], seed=5)
    whole, state, counters = params.copy(), np.zeros((2, params.size), dtype), np.zeros(2)
    whole_loss, _ = train_epochs(whole, layout, X, Y, state, counters, epoch0=0, n_epochs=7, **kw)
    first, s1, c1 = params.copy(), np.zeros((2, params.size), dtype), np.zeros(2)
    train_epochs(first, layout, X, Y, s1, c1, epoch0=0, n_epochs=3, **kw)
    np.savez(tmp_path / "leg1.npz", params=first, state=s1, counters=c1)
    with np.load(tmp_path / "leg1.npz", allow_pickle=False) as saved:
        p2, s2, c2 = saved["params"].copy(), saved["state"].copy(), saved["counters"].copy()
    loss2, finished = train_epochs(p2, layout, X, Y, s2, c2, epoch0=3, n_epochs=4, **kw)
    assert finished == 4
    assert p2.tobytes() == whole.tobytes() and s2.tobytes() == state.tobytes() and c2.tobytes() == counters.tobytes()
    np.testing.assert_array_equal(loss2, whole_loss[3:])
