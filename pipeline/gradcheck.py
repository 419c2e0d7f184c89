"""Central-difference gradient checks of a config's objective (UFLDL's checkNumericalGradient).

The check runs on a small instance of the config: its first ``n_samples``
training rows (with the first row of each class swapped in, so that every
class is seen: mnist5k's first rows are all zeros), targets encoded against
the dataset's full class list, at most ``max_hidden`` units per hidden layer
(UFLDL's tip: about 10 examples and 1-2 hidden units), float64, dropout masks fixed.

It checks the backward pass of the config's architecture, loss, penalties,
dropout and sparsity, not its initial point: parameters are drawn from
N(0, 0.5²) (seeded). At a tiny initialisation (the lab's ε = 0.01, or
``Zero``) the gradient is so small that the two-sided difference's rounding
error alone exceeds the 1e-6 bound (measured: 1.15e-6 on XOR with ε = 0.01).
"""

from __future__ import annotations

import numpy as np

from kernels import loss_and_grad
from pipeline import encoding, fitting
from pipeline.config import load_config
from pipeline.model import DeepLearningModel

#: UFLDL's EPSILON for the two-sided difference.
EPSILON = 1e-4


def numerical_gradient(func, theta, epsilon=EPSILON):
    """Two-sided difference (J(θ+εe_k) − J(θ−εe_k)) / 2ε for every entry of ``theta``."""
    grad = np.zeros_like(theta)
    for k in range(theta.size):
        saved = theta[k]
        theta[k] = saved + epsilon
        plus = func(theta)
        theta[k] = saved - epsilon
        minus = func(theta)
        theta[k] = saved
        grad[k] = (plus - minus) / (2.0 * epsilon)
    return grad


def relative_difference(numeric, analytic) -> float:
    """‖num − ana‖ / ‖num + ana‖ (UFLDL's criterion; < 1e-9 is typical for a correct gradient)."""
    denominator = np.linalg.norm(numeric + analytic)
    return float(np.linalg.norm(numeric - analytic) / denominator) if denominator > 0 else 0.0


def check_model(spec, X, y=None, classes=None, epsilon=EPSILON) -> float:
    """Relative difference between backprop and numerical gradients of ``spec``'s objective at init."""
    spec = spec.model_copy(update={"dtype": "float64"})
    model = DeepLearningModel(spec)
    model.initialize(np.asarray(X, dtype=np.float64), y, classes)
    Xs = encoding.apply_input_scaler(model.scaler_, X, np.float64)
    Ys = model.encode_targets(X, y)
    hp = fitting.hyperparameters(spec, model.loss_)
    drop = np.asarray(spec.dropout_ratios)
    layout, seed = model.layout_, model.stream_seed_
    theta = np.random.default_rng(spec.seed).normal(0.0, 0.5, model.params_.size)

    def objective(t):
        return loss_and_grad(t, layout, Xs, Ys, model.loss_, hp, drop, seed=seed, epoch=0)[0]

    analytic = loss_and_grad(theta, layout, Xs, Ys, model.loss_, hp, drop, seed=seed, epoch=0)[1]
    return relative_difference(numerical_gradient(objective, theta.copy(), epsilon), analytic)


def covering_rows(y, n_samples, n_rows=None):
    """Sorted row indices: the first row of each class of ``y``, then the first other rows, ``n_samples`` in
    all or one per class if there are more classes. ``y=None`` (autoencoder): the first ``n_samples`` of
    ``n_rows``."""
    if y is None:
        return np.arange(min(n_samples, n_rows))
    _, first = np.unique(np.asarray(y), return_index=True)
    rest = np.setdiff1d(np.arange(len(y)), first)[:max(0, n_samples - len(first))]
    return np.sort(np.concatenate([first, rest]))


def check_config(config, n_samples=10, max_hidden=4, epsilon=EPSILON, data=None) -> float:
    """Gradient check of a training config on a small instance of it (see module doc)."""
    from pipeline.datasets import load_data

    cfg = load_config(config)
    data = load_data(cfg.data) if data is None else data
    hidden = [min(h, max_hidden) for h in cfg.model.hidden]
    spec = cfg.model.model_copy(update={"hidden": hidden, "hidden_dropout_ratios": (
        cfg.model.hidden_dropout_ratios and cfg.model.hidden_dropout_ratios[:len(hidden)])})
    classes = data.meta.get("classes")
    # values, not classes (or no targets): the first rows will do
    rows = covering_rows(None if classes is None else data.y_train, n_samples, len(data.X_train))
    X = data.X_train[rows]
    y = None if data.y_train is None else data.y_train[rows]
    return check_model(spec, X, y, classes, epsilon)
