"""The public dense wrappers: bad input raises with a message that names the problem; workspaces and chunks."""

import numpy as np
import pytest

import naive_dense as naive
from kernels import hyper
from kernels.layout import make_layout
from kernels.network import forward, hyper_vector, loss_and_grad, make_workspace, train_epochs

LAYOUT, N_PARAMS = make_layout((3, 4, 2), ("tanh", "linear"))


def _args(dtype=np.float64, m=5):
    rng = np.random.default_rng(0)
    return rng.standard_normal(N_PARAMS).astype(dtype), rng.standard_normal((m, 3)), rng.standard_normal((m, 2))


def _train(params, X, Y, **kw):
    options = dict(epoch0=0, n_epochs=1, batch_size=2, loss="quadratic", optimizer="sgd",
                   hp=hyper_vector(rate=0.01), drop=None, seed=0)
    options.update(kw)
    state = options.pop("state", None)
    if state is None:
        state = np.zeros((2, N_PARAMS), dtype=getattr(params, "dtype", np.float64))
    return train_epochs(params, LAYOUT, X, Y, state, np.zeros(2), **options)


@pytest.mark.parametrize("bad", [np.arange(N_PARAMS), np.zeros(N_PARAMS, np.float16), list(range(N_PARAMS))],
                         ids=["int64", "float16", "list"])
def test_wrong_params_type_is_a_type_error(bad):
    _, X, Y = _args()
    with pytest.raises(TypeError, match="params has dtype .*float32 or float64"):
        loss_and_grad(bad, LAYOUT, X, Y)
    with pytest.raises(TypeError, match="params has dtype"):
        forward(bad, LAYOUT, X)
    with pytest.raises(TypeError, match="params has dtype"):
        _train(bad, X, Y, state=np.zeros((2, N_PARAMS)))


def test_params_wrong_length():
    params, X, Y = _args()
    with pytest.raises(ValueError, match=rf"params has shape \({N_PARAMS - 1},\); .* {N_PARAMS} entries"):
        loss_and_grad(params[:-1].copy(), LAYOUT, X, Y)
    with pytest.raises(ValueError, match="params has shape"):
        forward(params.reshape(1, -1), LAYOUT, X)


def test_params_not_contiguous_or_read_only():
    params, X, Y = _args()
    strided = np.zeros(2 * N_PARAMS)[::2]
    with pytest.raises(ValueError, match="C-contiguous, writable.*params.copy"):
        loss_and_grad(strided, LAYOUT, X, Y)
    params.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        _train(params, X, Y)


@pytest.mark.parametrize("name,X,Y,pattern", [
    ("X", np.zeros(3), np.zeros((1, 2)), r"X is 1-dimensional .*\.reshape\(-1, 1\)"),
    ("X", np.zeros((5, 4)), np.zeros((5, 2)), "X has 4 columns but the network expects 3"),
    ("Y", np.zeros((5, 3)), np.zeros((5, 3)), "Y has 3 columns but the network expects 2"),
    ("Y", np.zeros((5, 3)), np.zeros((5, 2, 1)), "Y is 3-dimensional"),
    ("rows", np.zeros((5, 3)), np.zeros((4, 2)), "X has 5 rows but Y has 4"),
])
def test_wrong_shapes_name_the_argument(name, X, Y, pattern):
    params, _, _ = _args()
    with pytest.raises(ValueError, match=pattern):
        loss_and_grad(params, LAYOUT, X, Y)
    with pytest.raises(ValueError, match=name if name != "rows" else "X has 5 rows and Y has 4"):
        _train(params, X, Y)


def test_forward_checks_X():
    params, _, _ = _args()
    with pytest.raises(ValueError, match="X has 2 columns but the network expects 3"):
        forward(params, LAYOUT, np.zeros((4, 2)))


def test_unknown_names():
    params, X, Y = _args()
    with pytest.raises(ValueError, match=r"loss 'hinge' is unknown; use one of \['absolute', 'cross_entropy'"):
        loss_and_grad(params, LAYOUT, X, Y, loss="hinge")
    with pytest.raises(ValueError, match="loss 'hinge' is unknown"):
        _train(params, X, Y, loss="hinge")
    with pytest.raises(ValueError, match=r"optimizer 'rmsprop' is unknown; use one of \['adadelta', 'adam', 'sgd'\]"):
        _train(params, X, Y, optimizer="rmsprop")
    with pytest.raises(ValueError, match="hyperparameter 'learning_rate' is unknown"):
        hyper_vector(learning_rate=0.1)
    with pytest.raises(ValueError, match="hyperparameter 'n_hyper' is unknown"):
        hyper_vector(n_hyper=3)


@pytest.mark.parametrize("drop", [[1.0, 0.0], [-0.1, 0.0], [0.2], [0.1, 0.2, 0.3]])
def test_dropout_ratio_out_of_range_or_wrong_length(drop):
    params, X, Y = _args()
    with pytest.raises(ValueError, match=r"drop=.* must hold one ratio in \[0, 1\) per layer input \(2 values"):
        loss_and_grad(params, LAYOUT, X, Y, drop=drop)
    with pytest.raises(ValueError, match="drop="):
        _train(params, X, Y, drop=drop)


def test_train_state_and_batch_size():
    params, X, Y = _args()
    with pytest.raises(ValueError, match=rf"state has shape \(2, 3\), dtype float64; expected \(2, {N_PARAMS}\)"):
        _train(params, X, Y, state=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=rf"state has shape .*float32; expected \(2, {N_PARAMS}\) float64"):
        _train(params, X, Y, state=np.zeros((2, N_PARAMS), np.float32))
    with pytest.raises(ValueError, match="batch_size=0 must be >= 1"):
        _train(params, X, Y, batch_size=0)
    with pytest.raises(ValueError, match="X has 0 rows and Y has 0; they must match and be non-empty"):
        _train(params, X[:0], Y[:0])


def test_hyperparameter_vector_of_the_wrong_length_is_refused():
    params, X, Y = _args()
    with pytest.raises(ValueError, match=r"hp has shape \(3,\); it must be the \(18,\) vector hyper_vector\(\) builds"):
        loss_and_grad(params, LAYOUT, X, Y, hp=np.zeros(3))
    with pytest.raises(ValueError, match="hp has shape"):
        _train(params, X, Y, hp=np.zeros(3))


def test_forward_layer_and_batch_size_out_of_range():
    params, X, _ = _args()
    with pytest.raises(ValueError, match="layer=7 is out of range for a 2-layer network"):
        forward(params, LAYOUT, X, layer=7)
    with pytest.raises(ValueError, match="batch_size=0 must be >= 1"):
        forward(params, LAYOUT, X, batch_size=0)


def test_train_state_vectors_are_checked():
    params, X, Y = _args()
    state = np.zeros((2, N_PARAMS))
    with pytest.raises(ValueError, match=r"counters must be a float64 ndarray of shape \(2,\)"):
        train_epochs(params, LAYOUT, X, Y, state, np.zeros(2, np.float32), epoch0=0, n_epochs=1, batch_size=2,
                     loss="quadratic", optimizer="sgd", hp=hyper_vector(), drop=None, seed=0)
    with pytest.raises(ValueError, match=r"rho_run must be a float64 ndarray of shape \(4,\)"):
        _train(params, X, Y, rho_run=np.zeros(3))
    with pytest.raises(ValueError, match="n_epochs=-1 must be >= 0"):
        _train(params, X, Y, n_epochs=-1)


def test_hyper_vector_defaults_and_names():
    hp = hyper_vector(rate=0.5, nesterov=1)
    assert hp.shape == (hyper.N_HYPER,) and hp.dtype == np.float64
    assert hp[hyper.RATE] == 0.5 and hp[hyper.NESTEROV] == 1.0
    assert (hp[hyper.MAX_W2], hp[hyper.RATE_DECAY], hp[hyper.HUBER_DELTA]) == (np.inf, 1.0, 1.0)
    assert (hp[hyper.RHO], hp[hyper.EPSILON], hp[hyper.BETA1], hp[hyper.BETA2]) == (0.99, 1e-8, 0.9, 0.999)
    assert hp[hyper.L1] == hp[hyper.L2] == hp[hyper.MOMENTUM_START] == 0.0


# --------------------------------------------------------------------------- reusable workspace (L-BFGS), chunks
def _random_net(sizes, activations, seed, scale=0.7, dtype=np.float64):
    layout, n_params = make_layout(sizes, activations)
    rng = np.random.default_rng(seed)
    params = (scale * rng.standard_normal(n_params)).astype(dtype)
    return layout, params, rng


@pytest.mark.parametrize("drop", [None, [0.2, 0.5, 0.0]])
def test_reused_workspace_gives_the_same_objective(drop):
    layout, params, rng = _random_net((3, 4, 3, 2), ("rectifier", "tanh", "softmax"), seed=12)
    X = rng.standard_normal((6, 3))
    Y = naive.targets("softmax", "cross_entropy", rng, (6, 2))
    hp = hyper_vector(l2=0.1)
    workspace = make_workspace(layout, 6, np.float64, drop)
    workspace[:] = np.nan  # stale contents must never leak into a result
    for theta in (params, 0.5 * params, params):
        fresh = loss_and_grad(theta, layout, X, Y, "cross_entropy", hp, drop, seed=3, epoch=1)
        reused = loss_and_grad(theta, layout, X, Y, "cross_entropy", hp, drop, seed=3, epoch=1, workspace=workspace)
        assert fresh[0] == reused[0]
        np.testing.assert_array_equal(fresh[1], reused[1])


def test_workspace_for_another_shape_or_dtype_is_refused():
    layout, params, rng = _random_net((3, 4, 2), ("tanh", "linear"), seed=13)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    for wrong in (make_workspace(layout, 4, np.float64), make_workspace(layout, 5, np.float32)):
        with pytest.raises(ValueError, match=r"workspace was made for another shape or dtype.*make_workspace\("):
            loss_and_grad(params, layout, X, Y, workspace=wrong)


def test_forward_in_chunks_with_a_remainder_equals_one_chunk():
    layout, params, rng = _random_net((3, 5, 4, 2), ("rectifier", "maxout", "softmax"), seed=8)
    X = rng.standard_normal((11, 3))
    np.testing.assert_array_equal(forward(params, layout, X, batch_size=4), forward(params, layout, X))
    assert forward(params, layout, X[:0]).shape == (0, 2)


# issue 13: the kernel API refuses what the model refuses, instead of computing something else
@pytest.mark.parametrize("output", ["linear", "tanh", "rectifier"])
def test_cross_entropy_needs_a_sigmoid_or_softmax_output(output):
    layout, n = make_layout((3, 4, 2), ("tanh", output))
    params, X, Y = np.zeros(n), np.zeros((5, 3)), np.zeros((5, 2))
    message = rf"loss='cross_entropy' needs a sigmoid or softmax output layer, got output activation '{output}'; " \
              r"use loss='quadratic' \(or 'absolute', 'huber'\) or a sigmoid/softmax output"
    with pytest.raises(ValueError, match=message):
        loss_and_grad(params, layout, X, Y, "cross_entropy")
    with pytest.raises(ValueError, match=message):
        train_epochs(params, layout, X, Y, np.zeros((2, n)), np.zeros(2), epoch0=0, n_epochs=1, batch_size=2,
                     loss="cross_entropy", optimizer="sgd", hp=hyper_vector(rate=0.1), drop=None, seed=0)


@pytest.mark.parametrize("hidden", [("tanh",), ("rectifier",), ("sigmoid", "tanh"), ()])
def test_kl_sparsity_needs_sigmoid_hidden_units(hidden):
    sizes = (3, *([4] * len(hidden)), 3)
    layout, n = make_layout(sizes, (*hidden, "sigmoid"))
    params, X = np.zeros(n), np.zeros((5, 3))
    hp = hyper_vector(sparsity_beta=0.5, sparsity_rho=0.1, rate=0.1)
    message = r"hp\[SPARSITY_BETA\]=0.5 needs sigmoid hidden layers \(KL\(rho\|\|rho_hat\) of mean activations " \
              rf"in \(0, 1\)\), got hidden activations \[{', '.join(repr(a) for a in hidden)}\]; " \
              r"use sigmoid hidden layers or sparsity_beta=0"
    with pytest.raises(ValueError, match=message):
        loss_and_grad(params, layout, X, X, "quadratic", hp)
    with pytest.raises(ValueError, match=message):
        train_epochs(params, layout, X, X, np.zeros((2, n)), np.zeros(2), epoch0=0, n_epochs=1, batch_size=1,
                     loss="quadratic", optimizer="sgd", hp=hp, drop=None, seed=0)


def test_what_the_model_uses_is_still_accepted():
    for output in ("sigmoid", "softmax"):
        layout, n = make_layout((3, 4, 2), ("tanh", output))
        J, _ = loss_and_grad(np.zeros(n), layout, np.zeros((5, 3)), np.full((5, 2), 0.5), "cross_entropy")
        assert np.isfinite(J)
    layout, n = make_layout((3, 4, 3), ("sigmoid", "linear"))  # a sparse autoencoder with a linear output
    J, _ = loss_and_grad(np.zeros(n), layout, np.zeros((5, 3)), np.zeros((5, 3)), "quadratic",
                         hyper_vector(sparsity_beta=0.5, sparsity_rho=0.1))
    assert J > 0  # KL(0.1 || 0.5) of every hidden unit
