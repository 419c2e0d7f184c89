"""DeepLearningModel: an h2o.deeplearning-style estimator over the Numba kernels.

>>> model = DeepLearningModel(activation="Tanh", hidden=[2], epochs=10000, distribution="gaussian")
>>> model.fit(X, y).predict(X)                                    # doctest: +SKIP

Parameters are one flat vector (``params_``) described by ``layout_``;
``layer_params(l)`` returns copies of one layer's ``W`` and ``b``. Models are
saved as ``.npz`` (arrays) with a JSON header: no pickle.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from kernels import bias_view, forward, make_layout, weight_view
from pipeline import encoding, fitting, metrics
from pipeline.config import (ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, STOPPING_METRICS, ModelSpec,
                             check_stopping_metric)

FORMAT_VERSION = 1


def first_nonfinite(X: np.ndarray) -> tuple[int, int, int] | None:
    """(count, row, column) of the NaN/inf values of a 2-D array, the first in row order; None when all finite."""
    bad = ~np.isfinite(X)
    if not bad.any():
        return None
    rows, cols = np.nonzero(bad)
    return int(bad.sum()), int(rows[0]), int(cols[0])


def _check_finite(name, X):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} has shape {X.shape}; it must be 2-dimensional (n_samples, n_features).")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows); give at least one sample.")
    found = first_nonfinite(X)
    if found:
        raise ValueError(f"{name} holds {found[0]} NaN/inf value(s), first at row {found[1]}, column {found[2]}; "
                         f"drop or impute those rows before training.")
    return X


def _upgrade_spec(spec: dict) -> dict:
    """A spec saved before issue 13 (it has ``huber_alpha``): rename the Huber threshold and drop the options
    that were ignored then and are refused now, so the model loads and means what it computed."""
    spec = dict(spec)
    if "huber_alpha" not in spec:
        return spec
    spec["huber_delta"] = spec.pop("huber_alpha")
    optimizer = spec.get("optimizer", "auto")
    if optimizer == "adam":
        spec["rate_annealing"] = None
    if optimizer == "lbfgs":
        spec.update(max_w2=math.inf, stopping_rounds=0)
    task = ModelSpec.model_construct(**spec).task_kind
    if task is not None and spec.get("stopping_metric", "AUTO") not in ("AUTO", *STOPPING_METRICS[task]):
        spec["stopping_metric"] = "AUTO"
    return spec


class DeepLearningModel:
    """Feed-forward network trained by mini-batch backprop (or L-BFGS).

    Parameters
    ----------
    spec : ModelSpec or dict, optional
    **fields
        ModelSpec fields (h2o names), merged over ``spec``.
    """

    def __init__(self, spec: ModelSpec | dict | None = None, **fields):
        base = spec.model_dump() if isinstance(spec, ModelSpec) else dict(spec or {})
        self.spec = ModelSpec.model_validate({**base, **fields})
        self.history_: list[dict] = []

    # ------------------------------------------------------------------ setup
    def _resolve(self, y, classes):
        spec = self.spec
        if spec.autoencoder:
            task = "autoencoder"
        elif spec.distribution in ("multinomial", "bernoulli"):
            task = "classification"
        elif spec.distribution == "gaussian":
            task = "regression"
        else:
            non_numeric = y is not None and not np.issubdtype(np.asarray(y).dtype, np.number)
            task = "classification" if (classes is not None or non_numeric) else "regression"
        output = OUTPUT_ACTIVATIONS[spec.output_activation]
        if output is None:
            if task == "autoencoder":
                output = "sigmoid" if ACTIVATIONS[spec.activation][0] == "sigmoid" else "linear"
            else:
                output = "softmax" if task == "classification" else "linear"
        loss = LOSSES[spec.loss]
        if loss is None:
            loss = "cross_entropy" if (task == "classification" and output in ("softmax", "sigmoid")) else "quadratic"
        if loss == "cross_entropy" and output not in ("softmax", "sigmoid"):
            raise ValueError(f"loss=CrossEntropy needs a Softmax or Sigmoid output, got output_activation="
                             f"{spec.output_activation!r} ({output}); use loss=Quadratic or change the output.")
        if output == "softmax" and task != "classification":
            raise ValueError(f"output_activation=Softmax needs class labels, but the task is {task}; "
                             "use Linear, Sigmoid or Tanh.")
        return task, output, loss

    def _init_params(self, sizes, rng):
        spec = self.spec
        dtype = np.dtype(spec.dtype)
        params = np.zeros(self.n_params_, dtype=dtype)
        for layer in range(len(sizes) - 1):
            W = weight_view(params, self.layout_, layer)
            fan_in, fan_out = sizes[layer], sizes[layer + 1]
            dist = spec.initial_weight_distribution
            if dist == "UniformAdaptive":
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                if layer == len(sizes) - 2 and self.task_ == "classification":
                    bound *= 4.0  # h2o: "Softmax might need an extra factor 4, since it's like a sigmoid"
                W[:] = rng.uniform(-bound, bound, W.shape)
            elif dist == "Uniform":
                W[:] = rng.uniform(-spec.initial_weight_scale, spec.initial_weight_scale, W.shape)
            elif dist == "Normal":
                W[:] = rng.normal(0.0, spec.initial_weight_scale, W.shape)
        return params

    def initialize(self, X, y=None, classes=None):
        """Resolve task, output and loss, fit the input scaler and target encoder, and draw the
        initial parameters from the seed, without training (``fit`` starts here; gradient checks and
        initial-weight pictures use it on its own).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), optional
        classes : list, optional

        Returns
        -------
        self
        """
        spec = self.spec
        self.task_, output, self.loss_ = self._resolve(y, classes)
        check_stopping_metric(spec.stopping_metric, self.task_)  # distribution AUTO: known only now
        self.scaler_ = encoding.fit_input_scaler(X, spec.standardize, spec.autoencoder)
        if self.task_ == "autoencoder":
            self.encoder_ = {"task": "autoencoder", "output": output}
            n_out = X.shape[1]
        else:
            self.encoder_ = encoding.fit_target_encoder(y, self.task_, output, classes)
            n_out = encoding.n_outputs(self.encoder_)
        hidden_act, _ = ACTIVATIONS[spec.activation]
        self.sizes_ = [X.shape[1], *spec.hidden, n_out]
        self.layout_, self.n_params_ = make_layout(self.sizes_, [hidden_act] * len(spec.hidden) + [output])
        init_seq, stream_seq = np.random.SeedSequence(spec.seed).spawn(2)
        self.stream_seed_ = int(stream_seq.generate_state(1, dtype=np.uint64)[0])
        self.params_ = self._init_params(self.sizes_, np.random.default_rng(init_seq))
        return self

    def encode_targets(self, X, y):
        """Training targets in the output's range, shape (n_samples, n_outputs); X itself for autoencoders."""
        dtype = np.dtype(self.spec.dtype)
        if self.task_ == "autoencoder":
            return encoding.apply_input_scaler(self.scaler_, X, dtype) if self.spec.standardize else \
                np.ascontiguousarray(X, dtype=dtype)
        if y is None:
            raise ValueError("y is None but the model is supervised; pass targets or set autoencoder: true.")
        return encoding.encode_targets(self.encoder_, np.asarray(y), dtype)

    # -------------------------------------------------------------- training
    def fit(self, X, y=None, X_valid=None, y_valid=None, classes=None, progress=None, resume=None, horizon=None):
        """Train from scratch, or go on from a checkpoint.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), optional
            Labels or values; ignored (may be None) for autoencoders.
        X_valid, y_valid : optional validation data, scored at every scoring event.
            After fitting, ``stop_reason_`` says why training ended before ``epochs`` (None: it ran them all)
            and ``best_epoch_`` which scoring event ``overwrite_with_best_model`` restored (None: the last).
        classes : list, optional
            Declared class labels (e.g. from the dataset); makes ``distribution: AUTO`` a classification.
        progress : callable(entry: dict, total_epochs: int), optional
        resume : pipeline.checkpoint.Checkpoint, optional
            Continue from it (:func:`pipeline.checkpoint.resume_refusal` says when that is not exact);
            the data must give the same preprocessing, or ``CheckpointRefused`` is raised.
        horizon : int, optional
            Score as a run of ``horizon`` epochs would (see :func:`pipeline.fitting.run_stochastic`).
            After a stochastic fit ``train_state_`` is what :func:`pipeline.checkpoint.from_model` saves.

        Returns
        -------
        self
        """
        X = _check_finite("X", X)
        if y is not None and len(y) != X.shape[0]:
            raise ValueError(f"y has {len(y)} rows but X has {X.shape[0]}; they must match.")
        self.initialize(X, y, classes)
        if resume is not None:
            resume.check_model(self)
        Xs = encoding.apply_input_scaler(self.scaler_, X, np.dtype(self.spec.dtype))
        Ys = self.encode_targets(X, y)
        self.history_ = []
        score = self._scorer(X, y, X_valid, y_valid)
        hp = fitting.hyperparameters(self.spec, self.loss_)
        with fitting.single_threaded_blas():
            if self.spec.resolved_optimizer == "lbfgs":
                result = fitting.run_lbfgs(self.params_, self.layout_, Xs, Ys, self.spec, loss=self.loss_, hp=hp,
                                           score=score, progress=progress, task=self.task_)
                self.optimizer_message_ = result.message
            else:
                result = fitting.run_stochastic(
                    self.params_, self.layout_, Xs, Ys, self.spec, loss=self.loss_, task=self.task_, hp=hp,
                    drop=np.asarray(self.spec.dropout_ratios), seed=self.stream_seed_, score=score,
                    progress=progress, resume=None if resume is None else resume.loop, horizon=horizon)
                self.train_state_ = result.loop
        self.params_, self.history_ = result.params, result.history
        self.stop_reason_, self.best_epoch_ = result.stop_reason, result.best_epoch
        return self

    def _scorer(self, X, y, X_valid, y_valid):
        """``score(params) -> dict``: training (at most SCORE_TRAINING_SAMPLES rows) and validation
        metrics of a parameter vector, keys prefixed ``training_`` / ``validation_``."""
        n = X.shape[0]
        if n > fitting.SCORE_TRAINING_SAMPLES:
            pick = np.random.default_rng(self.spec.seed).choice(n, fitting.SCORE_TRAINING_SAMPLES, replace=False)
            X, y = X[np.sort(pick)], (None if y is None else np.asarray(y)[np.sort(pick)])
        if X_valid is not None:
            X_valid = _check_finite("X_valid", X_valid)

        def score(params):
            entry = {f"training_{k}": v for k, v in self._score(X, y, params).items()}
            if X_valid is not None:
                entry.update({f"validation_{k}": v for k, v in self._score(X_valid, y_valid, params).items()})
            return entry
        return score

    # ------------------------------------------------------------ inference
    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise RuntimeError("this model is not fitted yet; call fit(X, y) or DeepLearningModel.load(path).")

    def _outputs(self, X, layer=-1, params=None):
        self._check_fitted()
        params = self.params_ if params is None else params
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes_[0]:
            raise ValueError(f"X has shape {X.shape}; the model expects (n_samples, {self.sizes_[0]}).")
        Xs = encoding.apply_input_scaler(self.scaler_, X, params.dtype)
        return forward(params, self.layout_, Xs, layer=layer)

    def predict(self, X):
        """Labels (classification), values (regression) or reconstructions (autoencoder), shape (n_samples, ...)."""
        out = self._outputs(X)
        if self.task_ == "autoencoder":
            return self._unscale_reconstruction(out)
        return encoding.decode_outputs(self.encoder_, out)[0]

    def predict_proba(self, X):
        """Class probabilities of shape (n_samples, n_classes), columns in ``classes_`` order."""
        if getattr(self, "task_", None) != "classification":
            raise ValueError("predict_proba needs a classification model; use predict for values.")
        return encoding.decode_outputs(self.encoder_, self._outputs(X))[1]

    @property
    def classes_(self):
        return self.encoder_.get("classes")

    def _unscale_reconstruction(self, out):
        if not self.spec.standardize:
            return np.asarray(out, dtype=np.float64)
        return out * np.asarray(self.scaler_["scale"]) + np.asarray(self.scaler_["offset"])

    def score(self, X, y=None) -> dict:
        """h2o-style metrics: logloss/accuracy/MSE (classes), MSE/RMSE/MAE (values), MSE (autoencoder)."""
        return self._score(X, y, self.params_)

    def _score(self, X, y, params) -> dict:
        if self.task_ == "autoencoder":
            return {"MSE": float(np.mean(self._anomaly(X, params)))}
        out = self._outputs(X, params=params)
        labels, proba = encoding.decode_outputs(self.encoder_, out)
        if self.task_ == "classification":
            return metrics.classification_metrics(np.asarray(y), labels, proba, self.encoder_["classes"])
        return metrics.regression_metrics(y, labels)

    def deepfeatures(self, X, layer=0):
        """Activations of hidden layer ``layer`` (0-based), shape (n_samples, hidden[layer]) (h2o.deepfeatures)."""
        n_hidden = len(self.spec.hidden)
        if not 0 <= layer < n_hidden:
            raise ValueError(f"layer={layer} is out of range; this model has hidden layers 0..{n_hidden - 1}.")
        return self._outputs(X, layer=layer).astype(np.float64)

    def anomaly(self, X, per_feature=False):
        """Reconstruction error of an autoencoder (h2o.anomaly), in the scaled input space.

        Returns
        -------
        ndarray of shape (n_samples,) (mean squared error per row) or
        (n_samples, n_features) squared errors when ``per_feature``.
        """
        if self.task_ != "autoencoder":
            raise ValueError("anomaly needs an autoencoder; train with autoencoder: true.")
        return self._anomaly(X, self.params_, per_feature)

    def _anomaly(self, X, params, per_feature=False):
        Xs = encoding.apply_input_scaler(self.scaler_, np.asarray(X, dtype=np.float64), np.float64)
        err = (self._outputs(X, params=params).astype(np.float64) - Xs) ** 2
        return err if per_feature else err.mean(axis=1)

    def layer_params(self, layer):
        """Copies of (W of shape (n_out * pieces, n_in), b of shape (n_out * pieces,)) for one layer."""
        self._check_fitted()
        return weight_view(self.params_, self.layout_, layer).copy(), bias_view(self.params_, self.layout_, layer).copy()

    # ------------------------------------------------------------ save/load
    def save(self, path, extra: dict | None = None) -> Path:
        """Write ``path`` (.npz): arrays plus a JSON header (spec, encoders, history). No pickle."""
        self._check_fitted()
        self.extra_ = extra or {}
        header = {"format": "sweepnet-model", "version": FORMAT_VERSION, "spec": self.spec.model_dump(mode="json"),
                  "task": self.task_, "loss": self.loss_, "sizes": self.sizes_, "scaler": self.scaler_,
                  "encoder": self.encoder_, "history": self.history_, "extra": extra or {},
                  "stop_reason": getattr(self, "stop_reason_", None), "best_epoch": getattr(self, "best_epoch_", None)}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.savez(handle, params=self.params_, layout=self.layout_,
                     header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        return path

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; a truncated or foreign file raises ValueError."""
        from pipeline.model_io import read_model_file

        header, params, layout = read_model_file(path)
        model = cls(_upgrade_spec(header["spec"]))
        model.task_, model.loss_, model.sizes_ = header["task"], header["loss"], header["sizes"]
        model.scaler_, model.encoder_, model.history_ = header["scaler"], header["encoder"], header["history"]
        model.extra_ = header.get("extra", {})
        model.stop_reason_, model.best_epoch_ = header.get("stop_reason"), header.get("best_epoch")
        model.params_, model.layout_, model.n_params_ = params, layout, params.size
        return model
