"""ASHA's promotion rule against a hand-worked sequence, and how seeds make a configuration's value."""

from __future__ import annotations

import math

from pipeline.sweep.expand import Trial
from pipeline.sweep.schedulers import AshaScheduler, SeedGroups, point_tag

POINTS = [{"p": i} for i in range(4)]


def fake_trials(point, rung):
    tag = point_tag(point)
    return [Trial(index=0, key=f"{tag}@{rung}", config_key=tag, seed=None, axes=dict(point), config={}, rung=rung)]


def row(trial, value, status="finished"):
    return {"key": trial.key, "status": status, "objective": value}


def test_asha_promotes_a_configuration_as_soon_as_it_is_in_its_rungs_top_share():
    # 4 configurations, 3 rungs, keep 0.5 (floor(n/2) of a rung's n results so far), one slot, minimise.
    asha = AshaScheduler(POINTS, n_rungs=3, keep=0.5, make_trials=fake_trials, slots=1, minimize=True)
    tag = [point_tag(p) for p in POINTS]
    # each step: the job that finishes and its value -> the job ASHA starts next
    steps = [
        (5.0, (tag[1], 0)),  # p0@0=5: rung 0 {p0}: floor(0.5)=0 promotable -> new p1
        (3.0, (tag[1], 1)),  # p1@0=3: rung 0 {5,3}: top 1 = p1 -> promote p1 to rung 1 (no barrier)
        (2.0, (tag[2], 0)),  # p1@1=2: rung 1 {2}: floor(0.5)=0; rung 0's top 1 (p1) already promoted -> new p2
        (1.0, (tag[2], 1)),  # p2@0=1: rung 0 {5,3,1}: floor(1.5)=1 -> top 1 = p2 -> promote p2
        (4.0, (tag[1], 2)),  # p2@1=4: rung 1 {2,4}: top 1 = p1 -> p1 to rung 2 (highest rung first)
        (1.0, (tag[3], 0)),  # p1@2=1: top rung; rung 1 top p1 and rung 0 top p2 promoted -> new p3
        (0.5, (tag[3], 1)),  # p3@0=0.5: rung 0 {5,3,1,0.5}: floor(2)=2 -> top 2 = p3, p2 -> promote p3
        (1.0, (tag[3], 2)),  # p3@1=1: rung 1 {2,4,1}: floor(1.5)=1 -> top 1 = p3 -> p3 to rung 2
        (9.0, None),         # p3@2=9: nothing promotable, no configuration left -> nothing to start
    ]
    running = asha.initial()
    assert [t.key for t in running] == [f"{tag[0]}@0"]
    for value, expected in steps:
        running = asha.on_results([row(running[0], value)])
        assert [(t.config_key, t.rung) for t in running] == ([expected] if expected else [])
    assert asha.log == [(tag[0], 0), (tag[1], 0), (tag[1], 1), (tag[2], 0), (tag[2], 1), (tag[1], 2),
                        (tag[3], 0), (tag[3], 1), (tag[3], 2)]


def test_asha_fills_every_slot_and_never_promotes_a_failed_configuration():
    asha = AshaScheduler(POINTS[:2], n_rungs=2, keep=0.5, make_trials=fake_trials, slots=2, minimize=False)
    first = asha.initial()
    assert len(first) == 2  # both slots busy at once
    assert asha.on_results([row(first[0], math.nan, "failed")]) == []
    # p1 = 0.7 (maximise): rung 0 {failed, 0.7}: floor(1)=1 and the failed one never ranks -> p1 goes on
    assert [(t.config_key, t.rung) for t in asha.on_results([row(first[1], 0.7)])] == [(point_tag(POINTS[1]), 1)]


def test_seed_groups_complete_a_configuration_when_every_seed_is_in():
    trials = [Trial(index=i, key=f"k{i}", config_key="c", seed=i, axes={}, config={}) for i in range(3)]
    mean, median = SeedGroups("mean"), SeedGroups("median")
    for g in (mean, median):
        g.start("job", trials)
        assert g.complete([row(trials[0], 1.0), row(trials[1], 2.0)]) == []
        assert g.in_flight == 1
    assert mean.complete([row(trials[2], 6.0)]) == [("job", 3.0)]
    assert median.complete([row(trials[2], 6.0)]) == [("job", 2.0)]
    failed = SeedGroups()
    failed.start("job", trials)
    done = failed.complete([row(trials[0], 1.0), row(trials[1], math.nan, "failed"), row(trials[2], 1.0)])
    assert done[0][0] == "job" and math.isnan(done[0][1])
