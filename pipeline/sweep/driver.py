"""Driver-side steps of a sweep (plain Python; the Prefect flow calls them in order).

``prepare`` does everything that must happen before fan-out: validate the spec, the base config and the
dataset, gradient-check, create the MLflow store + experiment + parent run, mark stale children KILLED,
warm the Numba cache, expand the trials and size the chunks. ``Collector`` takes chunk outcomes as they
arrive (progress line, per-configuration children for censuses). ``finish`` writes the summary on the
parent and returns the counts the CLI turns into an exit code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import tracking, version
from pipeline.store_seed import seed_sqlite_store
from pipeline.config import get_dotted, set_dotted
from pipeline.sweep import continuation, lease, summary
from pipeline.sweep import expand as ex
from pipeline.sweep.errors import SweepBusy, SweepRefused  # noqa: F401  (raised and caught as driver.*)
from pipeline.sweep.gate import gradient_check
from pipeline.sweep.runner import TRAIN_FN, ChunkOptions, load_callable
from pipeline.sweep.spec import SweepSpec, base_config_dict, load_sweep

PROBE_ATTEMPTS = 3
FALLBACK_TRIAL_SECONDS = 1.0


@dataclass
class SweepPlan:
    """Everything the flow needs after ``prepare`` (trials of the current rung, chunks, tracking)."""

    spec: SweepSpec
    ctx: tracking.TrackingContext
    trials: list[ex.Trial]
    axes: list[str]
    options: ChunkOptions
    chunk_size: int
    store_dir: str
    sweep_key: str
    rung: int = 0
    trial_secs: float = math.nan
    history: list[dict] = field(default_factory=list)
    n_workers: int = 1
    reuse_older: bool = False
    #: trial key -> code version of the result an earlier run left (this version's, or an older one adopted)
    reused: dict[str, str] = field(default_factory=dict)
    #: code version -> trials of this sweep with a result of that older code (reused or not)
    older: dict[str, int] = field(default_factory=dict)
    #: set when this run took over the lease of a run that died
    lease_note: str = ""
    #: later waves of a RandomDiscrete search under strategy.stopping_rounds (``expand.waves``)
    waiting: list[list[ex.Trial]] = field(default_factory=list)

    @property
    def n_rungs(self) -> int:
        return len(self.spec.halving.rungs) if self.spec.halving else 1

    @property
    def reuse_note(self) -> str:
        """One sentence on results of older code: how many were reused from which version, or recomputed."""
        if not self.older:
            return ""
        counts = ", ".join(f"{v}: {n}" for v, n in sorted(self.older.items()))
        total = sum(self.older.values())
        if self.reuse_older:
            return f"reused {total} trials computed by older code ({counts}); this code is {version.code_version()}"
        return (f"{total} trials have results of older code ({counts}); they are recomputed with "
                f"{version.code_version()} (`sweepnet sweep --reuse-older` reuses them)")


def sweep_key(spec: SweepSpec, digest: str) -> str:
    """Hash of the spec (with the base config's content) and the dataset digest."""
    # execution options do not change what is computed: a rerun with another chunk size resumes
    payload = spec.model_dump(mode="json", exclude={"chunk_size", "chunk_seconds", "select_on_test", "log_model"})
    payload["strategy"].pop("max_runtime_secs", None)
    if not spec.strategy.stopping_rounds:  # grid early stopping off: its fields change nothing, older keys hold
        for name in ("stopping_rounds", "stopping_metric", "stopping_tolerance"):
            payload["strategy"].pop(name, None)
    payload["strategy"].pop("max_concurrent", None)
    if not payload.get("objectives"):
        payload.pop("objectives", None)
    if spec.strategy.kind != "Optuna":  # as above: keys of sweeps older than the Optuna strategy hold
        for name in ("sampler", "n_trials", "aggregate"):
            payload["strategy"].pop(name, None)
    if payload.get("halving") and payload["halving"].get("mode") == "sync":
        payload["halving"].pop("mode")
    payload["base"] = base_config_dict(spec)
    text = json.dumps({"spec": payload, "data": digest}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validate(spec_source: str | Path | dict, train_fn: str = TRAIN_FN) -> tuple[SweepSpec, list[ex.Trial]]:
    """Validate the spec and expand rung 0 (every trial config is validated, the data is loaded once)."""
    try:
        spec = load_sweep(spec_source)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise SweepRefused(str(err)) from None
    try:
        trials = ex.expand(spec)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise SweepRefused(f"sweep {spec.name!r} refused before fan-out: {err}") from None
    if not trials:
        raise SweepRefused(f"sweep {spec.name!r} expands to no trials; check space and strategy.max_models")
    metric = spec.objective.metric
    firsts = ex.one_per_configuration(trials)  # the data block is the same for every seed of a configuration
    no_valid = next((t for t in firsts if not get_dotted(t.config, "data.valid_fraction", 0) > 0), None)
    if metric.startswith("valid_") and no_valid is not None:
        raise SweepRefused(
            f"objective.metric = {metric!r} needs a validation split, but trial {no_valid.index} has "
            f"data.valid_fraction = {get_dotted(no_valid.config, 'data.valid_fraction', 0):g}; set "
            "data.valid_fraction (e.g. 0.2) in the base config or in space"
        )
    return spec, trials


def compile_signature(config: dict[str, Any]) -> str:
    """What decides which kernels a trial compiles: the non-numeric model fields, the depth, and which
    numeric options are switched on (e.g. l1 > 0, dropout > 0)."""
    model = config.get("model", {})
    sig = {k: (v if isinstance(v, (str, bool)) or v is None else bool(v)) for k, v in model.items()
           if k not in ("seed", "epochs", "hidden")}
    sig["depth"] = len(model.get("hidden") or [])
    return json.dumps([sig, config.get("data")], sort_keys=True, default=str)


def warm_and_probe(trials: list[ex.Trial], train_fn: str, objective: str | list[str] | None = None) -> float:
    """Compile every kernel variant the sweep needs in this process, so the on-disk Numba cache is warm
    before the workers start (concurrent cold compiles in every worker are what is slow), then estimate
    the seconds one trial takes from two short runs (~1/10 and ~2/10 of its epochs: a fixed cost plus a
    per-epoch slope, so that small trials' fixed cost is not scaled up ten times).

    A trial that fails here (diverges, raises, runs out of memory) is not the driver's business: it is
    skipped, and the fan-out turns it into one FAILED child like any other. The estimate then comes from the
    next trial that trains, or ``FALLBACK_TRIAL_SECONDS`` if none of the first few does. An ``objective``
    metric the probe's result lacks is refused (``SweepRefused``)."""
    from pipeline.warmup import warm

    train = load_callable(train_fn)
    seen: set[str] = set()
    for t in trials:
        sig = compile_signature(t.config)
        if sig in seen:
            continue
        seen.add(sig)
        try:
            warm(t.config)
        except Exception:  # noqa: BLE001 - reported per trial during the fan-out
            continue
    for t in trials[:PROBE_ATTEMPTS]:
        epochs = int(get_dotted(t.config, "model.epochs", 1) or 1)
        short = max(1, math.ceil(epochs / 10))
        try:
            (t1, result), (t2, _) = (_timed(train, _with_epochs(t.config, n)) for n in (short, 2 * short))
        except Exception:  # noqa: BLE001 - same as above
            continue
        for name in [objective] if isinstance(objective, str) or objective is None else objective:
            _check_metric(name, getattr(result, "metrics", None))
        return _trial_seconds(t1, t2, short, epochs)
    return FALLBACK_TRIAL_SECONDS


def _timed(train, config: dict) -> tuple[float, Any]:
    start = time.perf_counter()
    result = train(config)
    return time.perf_counter() - start, result


def _trial_seconds(t1: float, t2: float, short: int, epochs: int) -> float:
    """A trial of ``epochs`` from runs of ``short`` (t1 s) and ``2 * short`` epochs (t2 s): fixed cost (data,
    model set-up, tracking-free scoring) plus a per-epoch slope, never less than the longer probe took."""
    if epochs <= short:
        return t1
    per_epoch = max(t2 - t1, 0.0) / short
    fixed = max(t1 - per_epoch * short, 0.0)
    return max(fixed + per_epoch * epochs, t2 if epochs >= 2 * short else t1)


def _check_metric(objective: str | None, metrics: dict | None) -> None:
    """Refuse an objective metric the probe trial does not report (no trial would: nothing to rank by)."""
    if objective is None or not isinstance(metrics, dict) or objective in metrics:
        return
    raise SweepRefused(
        f"objective.metric = {objective!r} is not a metric the trials report; they report "
        f"{sorted(metrics)}: pick one of these"
    )


def _with_epochs(config: dict[str, Any], epochs: int) -> dict[str, Any]:
    config = copy.deepcopy(config)
    set_dotted(config, "model.epochs", epochs)
    return config


def prepare(
    spec_source: str | Path | dict,
    store_dir: str | Path = ".sweepnet",
    tracking_uri: str | None = None,
    n_workers: int = 1,
    train_fn: str = TRAIN_FN,
    check_gradient: bool = True,
    reuse_older: bool = False,
    lease_wait: float = 0.0,
) -> SweepPlan:
    """All pre-fan-out steps; returns the plan of rung 0.

    One run of a sweep at a time: a second run is refused (``SweepBusy``, naming the holder) or waits up to
    ``lease_wait`` seconds; the lease is released by ``collect.finish`` or ``release_lease``.

    ``reuse_older``: reuse results computed by older code (another ``sweepnet.version``); by default trial
    keys include the code version and those trials run again (``SweepPlan.reuse_note`` says how many)."""
    spec, trials = validate(spec_source, train_fn)
    store = Path(store_dir).resolve()
    uri = tracking_uri or tracking.default_tracking_uri(store)
    tracking.check_reachable(uri)  # seconds, not MLflow's ~4 minutes of client retries
    seed_sqlite_store(uri)  # a new local store: a copy of a migrated one, not ~90 migrations again
    # the gate's structural class and the warm-up's compile signature do not depend on the seed: one trial per
    # configuration gives the same checks (the first trial of each class), the probe its first trials
    firsts = ex.one_per_configuration(trials, keep=PROBE_ATTEMPTS)
    gate = gradient_check(firsts) if check_gradient else None
    store.mkdir(parents=True, exist_ok=True)
    key = sweep_key(spec, trials[0].data_digest)
    try:  # before the parent is reopened and RUNNING children are reconciled: those may be another run's
        held = lease.acquire(store, key, spec.name, wait=lease_wait)
    except lease.LeaseHeld as err:
        raise SweepBusy(str(err)) from None
    note = f"took over the lease of {lease.describe(held.previous)} (since {held.previous.get('since')}): " \
           "that run died without finishing" if held.previous else ""
    if note:
        print(f"sweep {spec.name!r}: {note}", flush=True)
    try:
        params = {"sweep": spec.model_dump(mode="json", exclude={"base"}), "base": base_config_dict(spec)}
        local = uri.startswith("sqlite") or uri.startswith("file")
        ctx = tracking.open_sweep(uri, spec.experiment or spec.name, spec.name, key, params,
                                  artifact_root=store / "artifacts" if local else None)
        tracking.tag_run(ctx, ctx.parent_run_id, {**version.source_tags(),
                                                  **({"sweepnet.gradient_check": gate.note} if gate else {})})
        tracking.reconcile_stale(ctx)
        trials, reused, older = find_reused(ctx, trials, spec.child_per, reuse_older)
        trials = continuation.mark_rung(spec, trials)
        trial_secs = warm_and_probe(ex.one_per_configuration(trials, keep=PROBE_ATTEMPTS), train_fn,
                                    [o.metric for o in spec.objectives or [spec.objective]])
        trials, *waiting = ex.waves(spec, trials)
        size = _chunk_size(spec, len(trials), trial_secs, n_workers)
        deadline = time.time() + spec.strategy.max_runtime_secs if spec.strategy.max_runtime_secs else None
        options = ChunkOptions(spec.name, spec.objective.metric, spec.child_per,
                               artifacts=spec.child_per == "trial", deadline=deadline, train_fn=train_fn,
                               log_model=spec.model_logging)
        axes = sorted(spec.space) + (["model.epochs"] if spec.halving else [])
        return SweepPlan(spec, ctx, trials, axes, options, size, str(store), key, trial_secs=trial_secs,
                         n_workers=max(1, n_workers), reuse_older=reuse_older, reused=reused, older=older,
                         lease_note=note, waiting=waiting)
    except BaseException as err:
        if isinstance(err, SweepRefused) and "ctx" in locals():  # refused by the probe: no parent left RUNNING
            tracking.close_sweep(ctx, failed=True)
        lease.release(held)
        raise


def release_lease(plan: SweepPlan) -> None:
    """Let the next run of this sweep start (``collect.finish`` calls it; call it when a run is abandoned)."""
    lease.release(lease.held_lease(plan.store_dir, plan.sweep_key))


#: Version label of results logged before children carried ``sweepnet.version``.
UNVERSIONED = "unversioned"


def find_reused(ctx: tracking.TrackingContext, trials: list[ex.Trial], child_per: str, adopt: bool,
                ) -> tuple[list[ex.Trial], dict[str, str], dict[str, int]]:
    """Which trials already have a FINISHED result, and from which code version.

    A trial's key includes the code version, so a result of older code is found by recomputing the key with
    that version (read from the children's ``sweepnet.version`` tags). With ``adopt`` (``reuse_older``) such
    a trial takes the older key, so the run skips it and the summary reads its result.

    Returns
    -------
    trials : the trials, older keys adopted
    reused : trial key -> code version, for every trial with a result
    older : code version -> number of trials with a result of that older version
    """
    done = {r.data.tags.get(tracking.TAG_KEY): r.data.tags.get(version.TAG_VERSION, UNVERSIONED)
            for r in tracking.children(ctx, status="FINISHED")}
    current = version.code_version()
    versions = sorted({v for v in done.values() if v != current})
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(trials):
        groups.setdefault(t.config_key if child_per == "config" else t.key, []).append(i)
    out, reused, older = list(trials), {}, Counter()

    def group_key(members: list[ex.Trial]) -> str:
        return members[0].key if child_per != "config" else _group_key(members[0].config_key,
                                                                        [t.key for t in members])
    for index in groups.values():
        members = [trials[i] for i in index]
        if group_key(members) in done:
            reused.update((t.key, current) for t in members)
            continue
        for v in versions:
            code = None if v == UNVERSIONED else v
            moved = [replace(t, key=ex.trial_key(t.config, t.seed, t.data_digest, code)) for t in members]
            if group_key(moved) in done:
                older[v] += len(members)
                if adopt:
                    for i, t in zip(index, moved):
                        out[i] = t
                    reused.update((t.key, v) for t in moved)
                break
    return out, reused, dict(older)


def _chunk_size(spec: SweepSpec, n_trials: int, trial_secs: float, n_workers: int) -> int:
    """The spec's fixed chunk size, or ``auto``: about ``chunk_seconds`` of work per task and at most
    ``expand.MAX_TASKS`` tasks (a fixed size is kept, with a warning when it makes more tasks than that)."""
    if spec.chunk_size == "auto":
        return ex.auto_chunk_size(n_trials, trial_secs, n_workers, spec.chunk_seconds)
    size = int(spec.chunk_size)
    tasks = ex.n_chunks(n_trials, size, n_workers)
    if tasks > ex.MAX_TASKS:
        print(f"warning: sweep {spec.name!r}: chunk_size = {size} makes {tasks} Prefect tasks of {n_trials} trials, "
              f"more than the {ex.MAX_TASKS} an automatic size allows (each task costs the driver and the Dask "
              f"scheduler memory and ~0.2 s); set chunk_size: auto or at least {ex.min_chunk_size(n_trials, n_workers)}",
              flush=True)
    return size


def pending_chunks(plan: SweepPlan) -> list[list[ex.Trial]]:
    """Chunks of the trials of the current rung that still need to run (finished ones are skipped)."""
    done = tracking.finished_keys(plan.ctx)
    if plan.spec.child_per == "config":
        keys = config_child_keys(plan)  # once per configuration: per trial it was O(N^2) (10^4 trials: ~40 s)
        todo = [t for t in plan.trials if keys[t.config_key] not in done]
    else:
        todo = [t for t in plan.trials if t.key not in done]
    return ex.chunk(todo, plan.chunk_size, plan.n_workers)


def config_child_key(plan: SweepPlan, config_key: str, keys: list[str] | None = None) -> str:
    """Key of a per-configuration child: the configuration and the exact trial keys it covers (``keys``, when the
    caller has them, else found among the plan's trials)."""
    if keys is None:
        keys = [t.key for t in plan.trials if t.config_key == config_key]
    return _group_key(config_key, keys)


def config_child_keys(plan: SweepPlan) -> dict[str, str]:
    """:func:`config_child_key` of every configuration of the rung, in one pass over the trials."""
    members: dict[str, list[str]] = {}
    for t in plan.trials:
        members.setdefault(t.config_key, []).append(t.key)
    return {ck: _group_key(ck, keys) for ck, keys in members.items()}


def _group_key(config_key: str, keys: list[str]) -> str:
    return hashlib.sha256(json.dumps([config_key, sorted(keys)]).encode()).hexdigest()[:16]


def next_rung(plan: SweepPlan, rows: list[dict]) -> SweepPlan | None:
    """The plan of the next successive-halving rung or search wave, or ``None`` after the last one."""
    if plan.waiting:
        return _next_wave(plan, rows)
    if plan.rung + 1 >= plan.n_rungs:
        return None
    objective = {r["key"]: r["objective"] for r in rows if r["status"] in summary.OK}
    points = ex.promote(plan.spec, plan.trials, objective)
    if not points:
        return None
    trials = ex.expand(plan.spec, rung=plan.rung + 1, points=points)
    trials, reused, older = find_reused(plan.ctx, trials, plan.spec.child_per, plan.reuse_older)
    trials = continuation.mark_rung(plan.spec, trials, previous=plan.trials)
    rungs = plan.spec.halving.rungs
    trial_secs = plan.trial_secs * rungs[plan.rung + 1] / rungs[plan.rung]  # longer trials: smaller chunks
    size = _chunk_size(plan.spec, len(trials), trial_secs, plan.n_workers)
    return replace(plan, trials=trials, rung=plan.rung + 1, history=plan.history + rows, trial_secs=trial_secs,
                   chunk_size=size, reused={**plan.reused, **reused},
                   older=dict(Counter(plan.older) + Counter(older)))


def _next_wave(plan: SweepPlan, rows: list[dict]) -> SweepPlan | None:
    """The next wave of configurations, or ``None`` when :func:`expand.grid_stop` ends the search (said on
    stdout and tagged ``sweepnet.grid_stopped`` on the parent)."""
    history = plan.history + rows
    note = ex.grid_stop(plan.spec, history)
    if note:
        left = len({t.config_key for wave in plan.waiting for t in wave})
        print(f"sweep {plan.spec.name!r}: {note}; {left} drawn configurations not launched", flush=True)
        tracking.tag_run(plan.ctx, plan.ctx.parent_run_id, {"sweepnet.grid_stopped": note})
        return None
    trials, *waiting = plan.waiting
    size = _chunk_size(plan.spec, len(trials), plan.trial_secs, plan.n_workers)
    return replace(plan, trials=trials, waiting=waiting, history=history, chunk_size=size)
