"""One training run from a config: load data, fit, score. What sweeps call per trial."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline import checkpoint
from pipeline.config import TrainConfig, load_config
from pipeline.datasets import load_data
from pipeline.model import DeepLearningModel


@dataclass
class TrainResult:
    """What one run produced.

    Attributes
    ----------
    model : DeepLearningModel
    history : list of dict
        Per scoring event: epoch, samples, training_objective, training_*/validation_* metrics.
    metrics : dict of str to float
        Final ``train_*``, ``valid_*`` and ``test_*`` metrics.
    config : dict
        The resolved config (every default filled in).
    data_digest : str
    data_meta : dict
    """

    model: DeepLearningModel
    history: list
    metrics: dict
    config: dict
    data_digest: str
    data_meta: dict = field(default_factory=dict)
    #: with ``resume``: ``from_epoch`` (0 when it trained from scratch) and ``note`` (why it did, if asked not to)
    continuation: dict = field(default_factory=dict)


def run_training(config, progress=None, data=None, resume=None, horizon=None) -> TrainResult:
    """Train one model as a config says.

    Parameters
    ----------
    config : TrainConfig, dict or path
    progress : callable(entry, total_epochs), optional
    data : LoadedData, optional
        Already loaded data (sweeps load a dataset once per worker chunk).
    resume : pipeline.checkpoint.Checkpoint, path or pipeline.checkpoint.Unavailable, optional
        Continue from this checkpoint. One that cannot continue exactly
        (:func:`pipeline.checkpoint.resume_refusal`) or is ``Unavailable`` trains from epoch 0 instead, and
        ``continuation["note"]`` says why; the metrics then carry ``epochs_trained``.
    horizon : int, optional
        Score as a run of ``horizon`` epochs would, so a later run can continue this one exactly.
    """
    cfg = load_config(config) if not isinstance(config, TrainConfig) else config
    data = load_data(cfg.data) if data is None else data
    digest = data.meta.get("digest", "")
    start, note = _usable_checkpoint(resume, cfg.model, digest, horizon)
    model = DeepLearningModel(cfg.model)
    fit_args = (data.X_train, data.y_train, data.X_valid, data.y_valid)
    try:
        model.fit(*fit_args, classes=data.meta.get("classes"), progress=progress, resume=start, horizon=horizon)
    except checkpoint.CheckpointRefused as refused:
        start, note = None, f"{refused}"
        model.fit(*fit_args, classes=data.meta.get("classes"), progress=progress, horizon=horizon)
    metrics = final_metrics(model, data)
    continuation = {}
    if resume is not None or horizon is not None:
        from_epoch = start.epoch if start is not None else 0
        metrics["epochs_trained"] = metrics["epochs_run"] - from_epoch
        continuation = {"from_epoch": from_epoch, "note": note, "source": start.source if start is not None else ""}
    return TrainResult(model=model, history=model.history_, metrics=metrics,
                       config=cfg.model_dump(mode="json"), data_digest=digest,
                       data_meta=data.meta, continuation=continuation)


def _usable_checkpoint(resume, spec, digest, horizon):
    """(checkpoint or None, why not) for ``run_training``'s ``resume``."""
    if resume is None:
        return None, ""
    if isinstance(resume, checkpoint.Unavailable):
        return None, resume.reason
    ckpt = resume if isinstance(resume, checkpoint.Checkpoint) else checkpoint.load_checkpoint(resume)
    note = checkpoint.resume_refusal(ckpt, spec, digest, horizon)
    return (None, note) if note else (ckpt, "")


def final_metrics(model, data) -> dict:
    """Scores on every available split, prefixed train_/valid_/test_, plus the final objective and the
    number of parameters (``n_params``, a size objective for multi-objective sweeps)."""
    out = {"final_objective": float(model.history_[-1]["training_objective"]),
           "epochs_run": float(model.history_[-1]["epoch"]), "n_params": float(model.n_params_)}
    for prefix, X, y in (("train", data.X_train, data.y_train), ("valid", data.X_valid, data.y_valid),
                         ("test", data.X_test, data.y_test)):
        if X is None or (y is None and model.task_ != "autoencoder"):
            continue
        out.update({f"{prefix}_{k}": float(v) for k, v in model.score(X, y).items()})
    return out


def predictions_table(model, X, max_rows=20) -> str:
    """h2o.predict-like text table of the first ``max_rows`` predictions."""
    X = np.asarray(X)[:max_rows]
    pred = model.predict(X)
    if model.task_ == "classification":
        proba = model.predict_proba(X)
        head = "  predict  " + "  ".join(f"p{c!s:>8}" for c in model.classes_)
        rows = [f"{i + 1:>3} {p!s:>6}  " + "  ".join(f"{v:9.6f}" for v in row) for i, (p, row) in enumerate(zip(pred, proba))]
    elif model.task_ == "regression":
        head = "     predict"
        rows = [f"{i + 1:>3} {float(v):9.6f}" for i, v in enumerate(np.ravel(pred))]
    else:
        return ""
    return "\n".join([head, *rows])
