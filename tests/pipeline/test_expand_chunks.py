"""Issue 12: the automatic chunk size caps the Prefect tasks of a rung at ``expand.MAX_TASKS``; trials of one
configuration share its config (read with their own seed), and what does not depend on the seed is checked once
per configuration."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import pytest

from pipeline.sweep import driver, expand as ex, gate
from pipeline.sweep.spec import load_sweep

XOR = {"name": "xor", "model": {"activation": "Tanh", "hidden": [2], "epochs": 50}, "data": {"source": "xor"}}


def spec(**over):
    raw = {"name": "t", "base": XOR, "seeds": 3, "space": {"model.hidden": [[2], [3]]}}
    raw.update(over)
    return load_sweep(raw)


def uncapped(n_trials, trial_secs, n_workers, target_secs=20.0):
    """``auto_chunk_size`` before the cap (issue 12), for the sweeps it leaves alone."""
    by_time = max(1, int(target_secs / max(trial_secs, 1e-6)))
    balance = max(1, math.ceil(n_trials / (2 * max(n_workers, 1))))
    return max(1, min(by_time, balance))


def test_a_million_two_second_trials_on_200_workers_make_at_most_the_cap_of_tasks():
    size = ex.auto_chunk_size(10**6, 2.0, 200)
    assert uncapped(10**6, 2.0, 200) == 10  # 10^5 tasks without the cap
    assert size == 100
    chunks = ex.chunk(list(range(10**6)), size, n_workers=200)
    assert len(chunks) == ex.n_chunks(10**6, size, 200) <= ex.MAX_TASKS
    assert len(chunks) >= 2 * 200 and len(chunks) % 200 == 0
    assert sum(len(c) for c in chunks) == 10**6


@pytest.mark.parametrize("n_trials", [1, 7, 180, 10_000, 99_999, 10**6, 3 * 10**6 + 1])
@pytest.mark.parametrize("n_workers", [1, 2, 3, 7, 64, 199, 6_000])
@pytest.mark.parametrize("trial_secs", [0.001, 0.3, 2.0, 60.0])
def test_auto_chunks_stay_under_the_cap_and_small_sweeps_are_unchanged(n_trials, n_workers, trial_secs):
    size = ex.auto_chunk_size(n_trials, trial_secs, n_workers)
    tasks = ex.n_chunks(n_trials, size, n_workers)
    assert tasks <= max(ex.MAX_TASKS, n_workers)
    if ex.n_chunks(n_trials, uncapped(n_trials, trial_secs, n_workers), n_workers) <= ex.MAX_TASKS:
        assert size == uncapped(n_trials, trial_secs, n_workers)  # the cap did not bind: as before
    if n_trials >= 2 * n_workers and 2 * n_workers <= ex.MAX_TASKS:
        assert tasks >= 2 * n_workers  # every worker still gets at least two tasks
    if n_trials <= 10_000:
        assert tasks == len(ex.chunk(list(range(n_trials)), size, n_workers))


def test_the_cap_is_a_parameter_and_min_chunk_size_is_the_smallest_size_under_it():
    assert ex.auto_chunk_size(1000, 1.0, 2) == 20 and ex.auto_chunk_size(1000, 1.0, 2, max_tasks=10) == 100
    for n, w, cap in [(1000, 3, 10), (10**6, 200, 10_000), (12345, 7, 100), (50, 4, 1)]:
        size = ex.min_chunk_size(n, w, cap)
        assert ex.n_chunks(n, size, w) <= max(cap, w)
        if size > 1:
            assert ex.n_chunks(n, size - 1, w) > max(cap, w)


def test_a_fixed_chunk_size_wins_over_the_cap_with_a_warning(capsys):
    fixed = spec(chunk_size=5)
    assert driver._chunk_size(fixed, 10**6, 2.0, 200) == 5
    out = capsys.readouterr().out
    assert "chunk_size = 5" in out and "200000 Prefect tasks" in out and "at least 100" in out
    assert driver._chunk_size(fixed, 1000, 2.0, 2) == 5
    assert capsys.readouterr().out == ""
    assert driver._chunk_size(spec(), 10**6, 2.0, 200) == 100  # auto: capped


def test_trials_of_a_configuration_share_its_config_and_read_their_own_seed():
    trials = ex.expand(spec(seeds=[5, 7, 9]))
    assert [t.config["model"]["seed"] for t in trials] == [5, 7, 9] * 2
    assert [t.axes["model.seed"] for t in trials] == [5, 7, 9] * 2
    assert len({id(t.config["data"]) for t in trials}) == 1  # one data block for all
    assert trials[0].config == {**trials[1].config, "model": {**trials[1].config["model"], "seed": 5}}
    # read-only: a write to the dict read is not kept, the trial's config stays as resolved
    trials[1].config["model"]["epochs"] = 1
    assert trials[1].config["model"]["epochs"] == 50
    # dataclasses.replace (feed, continuation, find_reused) keeps each trial's own seed in its config
    moved = replace(trials[4], key="other")
    assert (moved.config, moved.axes, moved.key) == (trials[4].config, trials[4].axes, "other")
    assert moved.config["model"]["seed"] == 7


def test_a_chunk_of_one_configuration_pickles_its_config_once():
    trials = ex.expand(spec(seeds=50))
    one, many = len(pickle.dumps(trials[:1])), len(pickle.dumps(trials[:50]))
    assert many < 5 * one  # 50 trials: 50 keys and seeds, one config
    assert [t.config for t in pickle.loads(pickle.dumps(trials[:50]))] == [t.config for t in trials[:50]]


def test_a_resolver_that_changes_the_seed_resolves_every_trial_on_its_own():
    def bump(raw):
        config = ex.default_resolver(raw)
        config["model"]["seed"] += 1
        return config

    trials = ex.expand(spec(seeds=[5, 7]), resolver=bump)
    assert [t.seed for t in trials] == [6, 8, 6, 8]
    assert all(t.key == ex.trial_key(t.config, t.seed, t.data_digest, ex.version.code_version()) for t in trials)


def test_one_trial_per_configuration_gives_the_same_gradient_gate():
    trials = ex.expand(spec(seeds=4, space={"model.hidden": [[2], [3]], "model.activation": ["Tanh", "Rectifier"],
                                            "model.l2": [0.0, 0.01]}))
    firsts = ex.one_per_configuration(trials, keep=3)
    assert firsts[:3] == trials[:3] and len(firsts) == 3 + 7
    assert [t.config_key for t in firsts[3:]] == list(dict.fromkeys(t.config_key for t in trials))[1:]
    for cap in (1, 3, 100):
        assert gate.gradient_check(firsts, max_classes=cap, check=lambda c: 0.0) == \
            gate.gradient_check(trials, max_classes=cap, check=lambda c: 0.0)
