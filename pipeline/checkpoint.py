"""Training checkpoints: stop after E1 epochs, go on later to E2 > E1, end bit-identical to a straight run.

>>> model.fit(X, y, horizon=E2)                      # doctest: +SKIP
>>> save_checkpoint(from_model(model, digest), "ckpt.npz")
>>> ckpt = load_checkpoint("ckpt.npz")
>>> resume_refusal(ckpt, spec_E2, digest, horizon=E2)   # '' when the continuation is exact, else why not
>>> DeepLearningModel(spec_E2).fit(X, y, resume=ckpt, horizon=E2)

A checkpoint holds what :class:`pipeline.fitting.LoopState` holds (current parameters, optimiser moments,
samples/steps counters, running activations, the epoch reached, scoring history, the best-model record and
a stop reason) plus what fixes the model (spec, task, loss, sizes, preprocessing, the stream seed) and the
dataset digest. Shuffling and dropout draw from (seed, epoch) counters, so no RNG state is needed.
The file is one ``.npz`` of arrays with a JSON header: no pickle.

Exactness needs both runs to score on the same grid (``horizon``: score as a run of that many epochs
would). What cannot continue exactly is refused by :func:`resume_refusal`, never run differently: L-BFGS
(scipy keeps its curvature pairs), a ``max_runtime_secs`` deadline (timing decides where it stops), a spec
that differs in anything but ``epochs``, other data, E2 <= E1, or another scoring interval.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.fitting import LoopState, scoring_schedule

__all__ = ["Checkpoint", "CheckpointRefused", "Unavailable", "from_model", "load_checkpoint", "resume_refusal",
           "save_checkpoint"]

FORMAT = "sweepnet-checkpoint"
VERSION = 1
_ARRAYS = ("params", "state", "counters", "rho_run", "layout", "best_params")
_MODEL_FIELDS = ("task", "loss", "sizes", "scaler", "encoder", "stream_seed")


class CheckpointRefused(ValueError):
    """A checkpoint cannot continue this run exactly; the message says why."""


@dataclass(frozen=True)
class Unavailable:
    """A continuation that was asked for but has no checkpoint (``reason`` says why): train from 0."""

    reason: str


@dataclass
class Checkpoint:
    """A training state to continue from.

    Attributes
    ----------
    header : dict
        ``spec`` (ModelSpec as JSON), ``task``, ``loss``, ``sizes``, ``scaler``, ``encoder``, ``stream_seed``,
        ``data_digest``.
    layout : ndarray of shape (n_layers, 6), int64
    loop : LoopState
    source : str
        Where it came from (the MLflow run id when fetched from a tracking store), for the record.
    """

    header: dict
    layout: np.ndarray
    loop: LoopState
    source: str = ""

    @property
    def epoch(self) -> int:
        return int(self.loop.epoch)

    def check_model(self, model) -> None:
        """Raise :class:`CheckpointRefused` unless ``model`` (initialised on the new run's data) is the model
        this checkpoint was taken from: same task, loss, sizes, preprocessing, stream seed and layout."""
        if model.spec.resolved_optimizer == "lbfgs":
            raise CheckpointRefused(_LBFGS)
        mine = {"task": model.task_, "loss": model.loss_, "sizes": model.sizes_, "scaler": model.scaler_,
                "encoder": model.encoder_, "stream_seed": model.stream_seed_}
        for name in _MODEL_FIELDS:
            if _canon(mine[name]) != _canon(self.header[name]):
                raise CheckpointRefused(f"checkpoint {name} = {_short(self.header[name])} but this run's data give "
                                        f"{_short(mine[name])}; continue on the same data or train from epoch 0")
        if not np.array_equal(model.layout_, self.layout) or model.params_.dtype != self.loop.params.dtype:
            raise CheckpointRefused("checkpoint layout/dtype differ from this model's; train from epoch 0")


_LBFGS = ("optimizer lbfgs cannot continue exactly: scipy's L-BFGS keeps its curvature pairs inside one call, "
          "so a continued run would differ from a straight one; it trains from epoch 0")


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, default=lambda v: np.asarray(v).tolist())


def _short(value, limit: int = 120) -> str:
    text = _canon(value)
    return text if len(text) <= limit else text[:limit] + "..."


def from_model(model, data_digest: str = "") -> Checkpoint:
    """The checkpoint of a model after a stochastic ``fit`` (its ``train_state_``)."""
    loop = getattr(model, "train_state_", None)
    if loop is None:
        raise ValueError("model has no training state to checkpoint (not fitted, or fitted with optimizer lbfgs, "
                         "which cannot continue); fit it with a stochastic optimizer first.")
    header = {"spec": model.spec.model_dump(mode="json"), "task": model.task_, "loss": model.loss_,
              "sizes": list(model.sizes_), "scaler": model.scaler_, "encoder": model.encoder_,
              "stream_seed": int(model.stream_seed_), "data_digest": data_digest}
    return Checkpoint(json.loads(_canon(header)), np.asarray(model.layout_, np.int64), loop.copy())


def save_checkpoint(checkpoint: Checkpoint, path) -> Path:
    """Write ``checkpoint`` to ``path`` (.npz of arrays plus a JSON header; no pickle)."""
    loop = checkpoint.loop
    best = loop.best
    header = {"format": FORMAT, "version": VERSION, **checkpoint.header, "epoch": int(loop.epoch),
              "interval": int(loop.interval), "history": loop.history, "reason": loop.reason,
              "best": None if best is None else [float(best[0]), best[1]]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    best_params = best[2] if best is not None else np.zeros(0, loop.params.dtype)
    with open(path, "wb") as handle:
        np.savez(handle, params=loop.params, state=loop.state, counters=loop.counters, rho_run=loop.rho_run,
                 layout=checkpoint.layout, best_params=best_params,
                 header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; a missing, truncated or foreign file raises."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train the earlier rung first.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in (*_ARRAYS, "header")}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable sweepnet checkpoint ({type(error).__name__}: {error}); "
                         "it is truncated or not a checkpoint - train from epoch 0.") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path} is not a version-{VERSION} sweepnet checkpoint (format={header.get('format')!r}, "
                         f"version={header.get('version')!r}); train from epoch 0.")
    params, state = arrays["params"], arrays["state"]
    if params.ndim != 1 or state.shape != (2, params.size) or arrays["counters"].shape != (2,):
        raise ValueError(f"{path}: params {params.shape}, state {state.shape} and counters "
                         f"{arrays['counters'].shape} do not fit together; the file was altered - train from 0.")
    best = None if header["best"] is None else (header["best"][0], header["best"][1], arrays["best_params"].copy())
    loop = LoopState(params.copy(), state.copy(), arrays["counters"].astype(np.float64), arrays["rho_run"].copy(),
                     int(header["epoch"]), int(header["interval"]), header["history"], best, header["reason"])
    model_header = {k: header[k] for k in ("spec", *_MODEL_FIELDS, "data_digest")}
    return Checkpoint(model_header, np.ascontiguousarray(arrays["layout"], np.int64), loop)


def resume_refusal(checkpoint: Checkpoint, spec, data_digest: str | None = None, horizon: int | None = None) -> str:
    """Why ``checkpoint`` cannot continue to a run of ``spec`` exactly ('' when it can).

    Parameters
    ----------
    spec : ModelSpec
        The continued run's model spec; only ``epochs`` may differ from the checkpoint's.
    data_digest : str, optional
        The continued run's dataset digest (checked when both sides have one).
    horizon : int, optional
        The continued run's scoring horizon (see :func:`pipeline.fitting.run_stochastic`).
    """
    if spec.resolved_optimizer == "lbfgs":
        return _LBFGS
    if spec.max_runtime_secs > 0:
        return (f"max_runtime_secs = {spec.max_runtime_secs:g}: a wall-clock deadline makes where a run stops "
                "depend on timing, so a continuation cannot match a straight run; it trains from epoch 0")
    mine, theirs = spec.model_dump(mode="json"), checkpoint.header["spec"]
    changed = sorted(k for k in set(mine) | set(theirs) if k != "epochs" and _canon(mine.get(k)) != _canon(theirs.get(k)))
    if changed:
        return (f"the model spec differs from the checkpoint's in {changed} (only epochs may change); "
                "it trains from epoch 0")
    if data_digest and checkpoint.header.get("data_digest") and data_digest != checkpoint.header["data_digest"]:
        return (f"data digest {data_digest} differs from the checkpoint's {checkpoint.header['data_digest']}; "
                "it trains from epoch 0")
    total = int(math.ceil(spec.epochs))
    if total <= checkpoint.epoch:
        return (f"model.epochs = {spec.epochs:g} is not beyond the checkpoint's epoch {checkpoint.epoch}; "
                "a continuation needs more epochs, so it trains from epoch 0")
    interval = scoring_schedule(spec, max(total, horizon or 0))
    if interval != checkpoint.loop.interval:
        return (f"this run scores every {interval} epochs but the checkpoint's run scored every "
                f"{checkpoint.loop.interval} (horizon {horizon}); pass the checkpoint run's horizon or set "
                "score_interval; it trains from epoch 0")
    return ""
