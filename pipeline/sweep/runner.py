"""Run a chunk of trials in one worker process and log each one as an MLflow child.

This is the body of the Prefect task (``flows/sweep.py`` only wraps it). Plain Python: it can be
called directly in tests, in a thread, or on a Dask worker. A trial that raises or diverges becomes a
FAILED child with the error; the chunk goes on. Work is skipped when the trial key already has a
FINISHED child, so re-executing a chunk (Dask does that after a worker dies) logs nothing twice.
With ``child_per: config`` there is no child per trial: the chunk's results are one table on the parent
(:mod:`pipeline.sweep.results_table`), which a re-executed chunk overwrites under the same name.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib
import inspect
import json
import math
import os
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline import mlflow_model, model_logging, tracking, version
from pipeline.sweep import continuation, results_table
from pipeline.sweep.expand import Trial
from pipeline.sweep.outcome import TrialOutcome
from pipeline.sweep.summary import format_value

TRAIN_FN = "pipeline.train:run_training"


@dataclass(frozen=True)
class ChunkOptions:
    """Per-sweep settings every chunk needs (small and picklable).

    Attributes
    ----------
    sweep_name : str
    objective : str
        Metric key of ``TrainResult.metrics`` that ranks trials.
    child_per : {"trial", "config"}
        ``config``: no per-trial MLflow children; the chunk's results go to the parent run as one table
        (:mod:`pipeline.sweep.results_table`) and back to the driver, which logs one child per configuration.
    artifacts : bool
        Log scoring history, weights and config per trial child (pictures: :mod:`pipeline.sweep.topk`).
    deadline : float or None
        ``time.time()`` after which no new trial starts (``max_runtime_secs``).
    train_fn : str
        ``"module:function"`` of the trial function; the real one unless a test says otherwise.
    log_model : {"all", "best", "none"}
        ``all``: every FINISHED trial child gets an MLflow model (``pipeline.model_logging``); ``best``: only
        the best, logged at summary time from its weights.
    """

    sweep_name: str
    objective: str
    child_per: str = "trial"
    artifacts: bool = True
    deadline: float | None = None
    train_fn: str = TRAIN_FN
    log_model: str = "all"


def load_callable(path: str) -> Callable:
    """Import ``"package.module:function"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


#: A trial whose worker process died this many times while training it is FAILED, not started again.
MAX_ATTEMPTS = 2


def run_chunk(
    trials: list[Trial], ctx: tracking.TrackingContext | None, options: ChunkOptions,
    memory_limit: int | None = None,
) -> list[TrialOutcome]:
    """Run ``trials`` one after another; return one :class:`TrialOutcome` per trial (status
    ``finished``, ``failed``, ``cached`` or ``skipped``).

    With a child per trial, each trial is marked on the parent while it trains (with the memory it used
    once past half of ``memory_limit``, the Dask worker's, in bytes). When Dask re-runs the chunk after its
    worker died, a trial started :data:`MAX_ATTEMPTS` times without a result is the one that killed it:
    it becomes a FAILED child ("out of memory" when it was seen near the limit) and its siblings go on."""
    train = _with_shared_data(load_callable(options.train_fn))
    tracked = ctx is not None and options.child_per == "trial"
    started = tracking.started_trials(ctx) if tracked else {}
    outcomes = []
    for trial in trials:
        began = time.perf_counter()
        # one indexed lookup per trial (~5 ms at any sweep size) rather than every finished key per chunk,
        # which grows with the sweep: a chunk Dask re-runs after its worker died skips what was logged
        attempts = started.get(trial.key, {}).get("attempts", 0)
        if tracked and tracking.is_finished(ctx, trial.key):
            outcomes.append(_outcome(trial, "cached"))
        elif options.deadline is not None and time.time() > options.deadline:
            outcomes.append(_outcome(trial, "skipped", error="max_runtime_secs reached before start"))
        elif tracked and attempts >= MAX_ATTEMPTS:
            outcomes.append(_killed_its_worker(trial, ctx, options, started[trial.key]))
        elif tracked:
            with _watch_memory(ctx, trial.key, {"attempts": attempts + 1, "pid": os.getpid()}, memory_limit):
                outcomes.append(run_trial(trial, ctx, options, train))
        else:
            outcomes.append(run_trial(trial, ctx, options, train))
        if tracked:  # the worker's time on this trial besides training: lookups, marks, child, artifacts
            outcomes[-1].log_seconds = time.perf_counter() - began - outcomes[-1].seconds
    if ctx is not None and options.child_per == "config" and outcomes:
        _write_table(ctx, outcomes)
    return outcomes


def _write_table(ctx, outcomes: list[TrialOutcome]) -> None:
    """The chunk's result table on the parent run, one upload (``child_per: config``). A failed upload is a
    warning: the outcomes still go back to the driver, which writes the table itself (``collect.Collector``)."""
    began = time.perf_counter()
    try:
        results_table.write_chunk(ctx, outcomes)
    except Exception as err:  # noqa: BLE001 - the chunk's results must reach the driver regardless
        warnings.warn(f"could not upload the result table of the chunk starting at trial {outcomes[0].index} "
                      f"({type(err).__name__}: {err}); the driver writes it", RuntimeWarning, stacklevel=2)
    share = (time.perf_counter() - began) / len(outcomes)
    for o in outcomes:
        o.log_seconds += share


def _killed_its_worker(trial: Trial, ctx, options: ChunkOptions, note: dict) -> TrialOutcome:
    """The FAILED outcome (and child) of a trial whose worker died each time it trained."""
    n, rss, limit = note["attempts"], note.get("rss"), note.get("limit")
    if rss and limit:
        error = (f"out of memory: the Dask worker died {n} times while training this trial, last seen using "
                 f"{rss / 2**20:.0f} MiB of its {limit / 2**20:.0f} MiB memory limit (the nanny restarts a worker "
                 "past it); lower the trial's memory (hidden, mini_batch_size, data) or raise --memory-limit")
    else:
        error = (f"worker died: the Dask worker process died {n} times while training this trial (killed, or "
                 "out of memory before it could be measured); it is not started again")
    out = _outcome(trial, "failed", error=error)
    _log_trial(out, trial, ctx, options, None, error)
    tracking.mark_started(ctx, trial.key, None)
    return out


@contextlib.contextmanager
def _watch_memory(ctx, key: str, note: dict, limit: int | None, every: float = 0.1):
    """Mark ``key`` started; while the body runs, a thread adds the process's resident memory to the mark
    each time it passes another tenth of ``limit`` beyond half of it (a few writes, only near the limit).
    The mark is cleared when the body ends, also by an exception: only a dead process leaves it. The marks are
    best effort: one the store refuses (e.g. a lock held too long under load) is warned about, never fatal."""
    _mark(ctx, key, note)
    stop = threading.Event()

    def watch():
        step, seen = (limit or 0) / 10, (limit or 0) / 2
        while not stop.wait(every):
            rss = _resident_bytes()
            if rss >= seen + step:
                seen = rss
                _mark(ctx, key, {**note, "rss": rss, "limit": limit})

    thread = threading.Thread(target=watch, daemon=True, name=f"memory-watch-{key}")
    if limit:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if limit:
            thread.join()
        _mark(ctx, key, None)


def _mark(ctx, key: str, note: dict | None) -> None:
    """``tracking.mark_started`` that warns instead of failing the trial it describes."""
    try:
        tracking.mark_started(ctx, key, note)
    except Exception as err:  # MLflow/sqlite errors: the trial itself is unaffected
        warnings.warn(f"could not mark trial {key} on the parent run ({type(err).__name__}: {err}); a worker "
                      "death during it is then reported as a lost chunk", RuntimeWarning, stacklevel=2)


def _resident_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``; 0 where unavailable)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _with_shared_data(train: Callable) -> Callable:
    """Load each distinct dataset once per chunk when the trial function accepts ``data=``."""
    if "data" not in inspect.signature(train).parameters:
        return train
    cache: dict[str, Any] = {}

    @functools.wraps(train)  # keeps its signature: continuation.accepts reads it
    def call(config: dict, **kwargs: Any):
        from pipeline.datasets import load_data

        tag = json.dumps(config.get("data", {}), sort_keys=True, default=str)
        if tag not in cache:
            cache.clear()  # chunks are grouped by configuration: keep one dataset in memory
            cache[tag] = load_data(config["data"])
        result = train(config, data=cache[tag], **kwargs)
        if not hasattr(result, "input_rows"):  # the MLflow model's input example comes from these rows
            result.input_rows = cache[tag].X_train[:3].copy()
        return result

    return call


def _outcome(trial: Trial, status: str, **extra: Any) -> TrialOutcome:
    return TrialOutcome.of(trial, status, pid=os.getpid(), ended=time.time(), **extra)


def divergence(history: list[dict], metrics: dict[str, float], objective: str) -> str:
    """Why a finished training run counts as diverged ('' when it did not)."""
    for row in history:
        for k, v in row.items():
            if isinstance(v, float) and ("objective" in k or k.endswith("loss")) and not math.isfinite(v):
                return f"diverged: {k} = {v} at epoch {row.get('epoch', '?')}"
    value = metrics.get(objective)
    if value is None:
        return f"objective metric {objective!r} is not among the trial's metrics {sorted(metrics)}"
    if not math.isfinite(float(value)):
        return f"diverged: objective {objective} = {value}"
    return ""


def run_trial(trial: Trial, ctx, options: ChunkOptions, train: Callable) -> TrialOutcome:
    """Train one trial and log it (child run), turning errors and divergence into FAILED children."""
    start = time.perf_counter()
    try:
        kwargs = continuation.train_kwargs(trial, ctx) if continuation.accepts(train) else {}
        result = train(trial.config, **kwargs)
        error = divergence(result.history, result.metrics, options.objective)
    except Exception as err:  # any trial error, MemoryError included, becomes a FAILED child
        result, error = None, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}"
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in (result.metrics if result else {}).items() if _num(v)}
    status = "failed" if error else "finished"
    out = _outcome(
        trial, status, metrics=metrics, error=error, seconds=seconds,
        objective=metrics.get(options.objective, math.nan) if not error else math.nan,
        epochs_run=len(result.history) if result else 0,
    )
    if ctx is None or options.child_per != "trial":
        return out
    logged = time.perf_counter()
    _log_trial(out, trial, ctx, options, result, error)
    out.log_seconds = time.perf_counter() - logged
    return out


def _log_trial(out: TrialOutcome, trial: Trial, ctx, options: ChunkOptions, result, error: str) -> None:
    """The trial's MLflow child: FAILED with the error, or FINISHED with metrics and artifacts."""
    name = run_name(options.sweep_name, trial)
    tags = {**trial_tags(trial), **continuation.result_tags(result)}
    meta = getattr(result, "data_meta", None) if result is not None else None
    datasets = [model_logging.dataset_input(trial.config.get("data"), trial.data_digest, meta)]
    if error:
        out.run_id = tracking.log_failure(ctx, trial.key, name, trial.config, tags, error, datasets=datasets)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if options.artifacts:
            write_trial_artifacts(Path(tmp), trial, result)
        weights = Path(tmp) / "model" / "weights.npz"
        hook = (lambda run_id: _log_model(ctx, run_id, weights)) if options.artifacts and options.log_model == "all" \
            else None
        run_id = tracking.log_child(
            ctx, trial.key, name, trial.config, tags, result.history, out.metrics,
            tmp if options.artifacts else None, curve_keys=curve_keys(result.history, options.objective),
            check_first=False,  # run_chunk looked the key up right before training
            datasets=datasets, before_close=hook,
        )
    out.run_id = run_id
    if run_id is None:
        out.status = "cached"


def _log_model(ctx, run_id: str, weights: Path) -> None:
    """The child's MLflow model; a failure is tagged (``sweepnet.model_error``), not a lost trial: the summary
    logs the best child's model again from its weights if it has none."""
    try:
        model_logging.log_model(tracking.uri_for(ctx), ctx.experiment_id, run_id, weights)
    except Exception as err:  # noqa: BLE001 - the trial's result stands without its MLflow model
        tracking.tag_run(ctx, run_id, {"sweepnet.model_error": f"{type(err).__name__}: {err}"[-4000:]})


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run_name(sweep_name: str, trial: Trial) -> str:
    """Readable child name: sweep, index and the swept values."""
    short = ",".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in trial.axes.items())
    return f"{sweep_name}-{trial.index:05d} {short}"[:240]


def trial_tags(trial: Trial) -> dict[str, Any]:
    """Tags of a trial child: key, configuration key, rung, seed, and one tag per swept axis."""
    tags = {
        tracking.TAG_CONFIG: trial.config_key, tracking.TAG_KIND: "trial", "sweepnet.rung": trial.rung,
        "sweepnet.index": trial.index, "sweepnet.seed": trial.seed, "sweepnet.data_digest": trial.data_digest,
    }
    tags.update({f"sweepnet.axis.{k}": v for k, v in trial.axes.items()})
    if "optuna_trial" in trial.extra:  # the Optuna trial this configuration's seed belongs to
        tags["sweepnet.optuna_trial"] = trial.extra["optuna_trial"]
    tags.update(version.source_tags())  # the code that computed this child (this process's)
    return tags


def curve_keys(history: list[dict], objective: str) -> set[str]:
    """History keys logged as per-epoch MLflow metrics: the losses the learning curve shows and the
    objective's own series (``train_MSE`` -> ``training_MSE``, ``valid_x`` -> ``validation_x``).

    Every other column stays in the child's ``scoring_history.csv``; each metric value is a row insert.
    """
    from pipeline.plots import loss_keys

    twin = objective.replace("train_", "training_", 1) if objective.startswith("train_") else (
        objective.replace("valid_", "validation_", 1) if objective.startswith("valid_") else objective)
    return set(loss_keys(history)) | {k for row in history for k in row if k == twin}


def write_scoring_history(history: list[dict], path: Path) -> None:
    """Every scoring event with every column (h2o's scoring history), as CSV."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def write_trial_artifacts(folder: Path, trial: Trial, result) -> None:
    """Scoring history CSV, resolved config YAML and weights (``model.save``): the files a worker logs per trial.

    The learning curve and the feature picture are drawn from these at summary time for the best trials
    (:mod:`pipeline.sweep.topk`), not here: together they cost more than a small trial's training."""
    (folder / "config.yaml").write_text(yaml.safe_dump(trial.config, sort_keys=False))
    write_scoring_history(result.history, folder / "scoring_history.csv")
    model_dir = folder / "model"
    model_dir.mkdir()
    result.model.save(model_dir / "weights.npz", extra=model_file_extra(result))
    continuation.write_checkpoint(folder, trial, result)


def model_file_extra(result) -> dict:
    """What a trial's weights file carries besides the model: the data meta its MLflow model needs (feature
    names, fitted preprocessing) and a few training rows as the input example."""
    meta = mlflow_model.file_meta(getattr(result, "data_meta", None) or {})
    rows = getattr(result, "input_rows", None)
    example = mlflow_model.input_example(rows, mlflow_model.fitted_steps(meta))
    return {"config": getattr(result, "config", None) or {}, "data_meta": meta,
            "input_example": None if example is None else example.tolist()}
