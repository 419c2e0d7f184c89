"""Sweep spec validation, deterministic expansion, trial keys, halving promotion and chunking."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipeline.sweep import expand as ex
from pipeline.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "sweeps"
XOR = {"name": "xor", "model": {"activation": "Tanh", "hidden": [2], "epochs": 50}, "data": {"source": "xor"}}


def spec(**over):
    raw = {"name": "t", "base": XOR, "seeds": 3, "space": {"model.hidden": [[2], [3]]}}
    raw.update(over)
    return load_sweep(raw)


@pytest.mark.parametrize("name, n", [("xor_census", 180), ("digits_grid", 24), ("xor_random", 24)])
def test_examples_validate_and_expand(name, n):
    s = load_sweep(EXAMPLES / f"{name}.yaml")
    trials = ex.expand(s)
    assert len(trials) == n
    assert len({t.key for t in trials}) == n
    assert all(len(t.key) == 16 for t in trials)


def test_expansion_is_deterministic_and_grouped_by_configuration():
    a, b = ex.expand(spec()), ex.expand(spec())
    assert [t.key for t in a] == [t.key for t in b]
    assert [t.config_key for t in a] == [a[0].config_key] * 3 + [a[3].config_key] * 3
    assert a[0].config_key != a[3].config_key
    assert [t.seed for t in a[:3]] == [t.seed for t in a[3:]]


def test_explicit_seed_axis_is_never_overridden():
    trials = ex.expand(spec(seeds=[5, 7]))
    assert [t.seed for t in trials] == [5, 7, 5, 7]
    assert [t.config["model"]["seed"] for t in trials] == [5, 7, 5, 7]
    swept = ex.expand(spec(seeds=None, space={"model.seed": [11, 12]}))
    assert [t.config["model"]["seed"] for t in swept] == [11, 12]


def test_trial_key_depends_on_config_seed_and_data():
    cfg = ex.default_resolver(XOR)
    k = ex.trial_key(cfg, 1, "d")
    assert k == ex.trial_key(cfg, 1, "d")
    assert len({k, ex.trial_key(cfg, 2, "d"), ex.trial_key(cfg, 1, "e")}) == 3


def test_random_discrete_draws_deterministically_per_seed():
    space = {"model.rate": {"loguniform": [1e-4, 1e-1]}, "model.hidden": {"choice": [[2], [3]]},
             "model.epochs": {"int": [10, 20]}, "model.rho": {"uniform": [0.9, 0.99]}}
    strat = {"kind": "RandomDiscrete", "max_models": 5, "seed": 3}
    a = ex.expand(spec(space=space, strategy=strat, seeds=None))
    b = ex.expand(spec(space=space, strategy=strat, seeds=None))
    c = ex.expand(spec(space=space, strategy={**strat, "seed": 4}, seeds=None))
    assert [t.key for t in a] == [t.key for t in b] != [t.key for t in c]
    assert len(a) == 5
    for t in a:
        assert 1e-4 <= t.axes["model.rate"] <= 1e-1 and 10 <= t.axes["model.epochs"] <= 20


@pytest.mark.parametrize("over, words", [
    ({"space": {"model.rate": {"uniform": [0, 1]}}}, ["model.rate", "Cartesian", "RandomDiscrete"]),
    ({"seeds": 0}, ["seeds", "0", "positive"]),
    ({"space": {"model.hidden": []}}, ["model.hidden", "empty"]),
    ({"space": {"model.l1": 0.1}}, ["model.l1", "list"]),
    ({"space": {"model.rate": {"loguniform": [0, 1]}}, "strategy": {"kind": "RandomDiscrete", "max_models": 2}},
     ["loguniform", "> 0"]),
    ({"strategy": {"kind": "RandomDiscrete"}}, ["max_models"]),
    ({"halving": {"rungs": [30, 10]}}, ["rungs", "increasing"]),
    ({"colour": "red"}, ["colour"]),
    ({"seeds": 2, "space": {"model.seed": [1, 2]}}, ["seed"]),
])
def test_bad_specs_name_field_value_and_fix(over, words):
    with pytest.raises(ValueError) as info:
        spec(**over)
    for word in words:
        assert word in str(info.value)


def test_invalid_trial_config_is_refused_with_its_axes():
    with pytest.raises(ValueError, match=r"model.hidden.*\[-1\]"):
        ex.expand(spec(space={"model.hidden": [[2], [-1]]}))


def test_missing_base_file_names_the_path(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nbase: nope.yaml\n")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_sweep(f)


def test_promote_keeps_best_share_by_mean_objective():
    s = spec(seeds=[1, 2], space={"model.hidden": [[2], [3], [4]]}, halving={"rungs": [10, 30], "keep": 0.34})
    trials = ex.expand(s)
    assert {t.config["model"]["epochs"] for t in trials} == {10}
    obj = {t.key: {2: 0.5, 3: 0.1, 4: math.nan}[t.axes["model.hidden"][0]] for t in trials}
    assert ex.promote(s, trials, obj) == [{"model.hidden": [3]}]
    nxt = ex.expand(s, rung=1, points=ex.promote(s, trials, obj))
    assert [t.config["model"]["epochs"] for t in nxt] == [30, 30]


def test_chunks_carry_seconds_of_work_and_balance_workers():
    assert ex.auto_chunk_size(10_000, 0.01, 2, target_secs=3.0) == 300
    assert ex.auto_chunk_size(12, 0.01, 2) == 3
    assert ex.auto_chunk_size(100, 30.0, 2) == 1
    assert ex.auto_chunk_size(1000, 2.0, 2) == 10  # ~20 s of work per task by default
    trials = ex.expand(spec())
    assert [len(c) for c in ex.chunk(trials, 4)] == [3, 3]  # as even as possible
    assert [len(c) for c in ex.chunk(trials, 4, n_workers=4)] == [2, 2, 1, 1]
    assert [len(c) for c in ex.chunk(trials * 3, 6, n_workers=2)] == [5, 5, 4, 4]  # 18 trials: 4 tasks, not 3
    assert [t.key for c in ex.chunk(trials * 3, 5, n_workers=2) for t in c] == [t.key for t in trials * 3]
    assert ex.chunk([], 3, n_workers=2) == []


# issue 13: model selection on a validation split, never silently on the test set
@pytest.mark.parametrize("name", ["xor_census", "digits_grid", "xor_random"])
def test_no_example_selects_on_the_test_set(name):
    from pipeline.sweep import driver

    s, trials = driver.validate(EXAMPLES / f"{name}.yaml")
    assert not s.objective.metric.startswith("test_") and not s.select_on_test
    if s.objective.metric.startswith("valid_"):
        assert all(t.config["data"]["valid_fraction"] > 0 for t in trials)


def test_digits_grid_ranks_by_validation_accuracy():
    s = load_sweep(EXAMPLES / "digits_grid.yaml")
    assert (s.objective.metric, s.objective.direction) == ("valid_accuracy", "maximize")


@pytest.mark.parametrize("metric", ["test_accuracy", "test_MSE"])
def test_an_objective_on_the_test_set_is_refused_unless_the_spec_says_so(metric):
    message = (rf"objective.metric = '{metric}' ranks the trials and tags the best model by the test set "
               r"\(model selection on test data\); rank by a validation metric \(objective.metric: "
               rf"'valid_{metric[5:]}' with data.valid_fraction > 0 in the base config\), or set "
               r"select_on_test: true to do it knowingly")
    with pytest.raises(ValueError, match=message):
        spec(objective={"metric": metric})
    assert spec(objective={"metric": metric}, select_on_test=True).select_on_test


def test_a_validation_objective_without_a_validation_split_is_refused_before_fan_out():
    from pipeline.sweep import driver

    with pytest.raises(driver.SweepRefused, match=r"objective.metric = 'valid_MSE' needs a validation split, but "
                                                  r"trial 0 has data.valid_fraction = 0; set data.valid_fraction "
                                                  r"\(e.g. 0.2\) in the base config or in space"):
        driver.validate({"name": "t", "base": XOR, "objective": {"metric": "valid_MSE"}})
    base = {**XOR, "data": {"source": "digits", "valid_fraction": 0.2}}
    driver.validate({"name": "t", "base": base, "objective": {"metric": "valid_MSE"}})


def test_the_summary_says_when_the_best_model_was_selected_on_the_test_set(tmp_path):
    from pipeline.sweep import summary

    rows = [{"key": "k", "config_key": "c", "seed": 1, "rung": 0, "status": "finished", "objective": 0.9,
             "metrics": {"test_accuracy": 0.9}, "run_id": "r", "error": "", "axes": {"model.hidden": [2]}}]
    knowingly = spec(objective={"metric": "test_accuracy", "direction": "maximize"}, select_on_test=True)
    result = summary.write_summary(tmp_path, rows, knowingly, ["model.hidden"])
    note = ("selected on the test set (select_on_test: true): the best model's test_accuracy is an optimistic "
            "estimate of its accuracy on new data")
    assert result["selection_note"] == note and note in (tmp_path / "leaderboard.md").read_text()
    plain = summary.write_summary(tmp_path, rows, spec(objective={"metric": "train_MSE"}), ["model.hidden"])
    assert plain["selection_note"] == ""


def _row(index, config_key, objective, status="finished"):
    return {"index": index, "config_key": config_key, "objective": objective, "status": status,
            "metrics": {"valid_accuracy": -objective}}


def test_grid_stop_is_h2o_search_criteria_over_configurations_in_draw_order():
    s = spec(strategy={"kind": "RandomDiscrete", "max_models": 8, "stopping_rounds": 2, "stopping_tolerance": 0.1},
             seeds=[0, 1])
    # per configuration (mean over its seeds): 5, 4, 3, 3.5 -> moving averages 4.5, 3.5, 3.25: the last two
    # (best 3.25) improve on 4.5 by more than 10 % -> go on; a 5th at 3.5 (averages ..., 3.25, 3.5) -> stop
    rows = [_row(2 * i + s_, f"c{i}", v + (0.5 if s_ else -0.5)) for i, v in enumerate([5, 4, 3, 3.5])
            for s_ in (0, 1)]
    assert ex.grid_stop(s, rows) == ""
    assert ex.grid_stop(s, rows[::-1]) == ""  # completion order does not matter, draw order does
    assert ex.grid_stop(s, rows[:4]) == ""  # fewer than 2 * stopping_rounds configurations
    stopped = ex.grid_stop(s, rows + [_row(8, "c4", 3.5), _row(9, "c4", 3.5)])
    assert stopped.startswith("grid search stopped after 5 configurations (strategy.stopping_rounds=2)")
    by_accuracy = s.model_copy(update={"strategy": s.strategy.model_copy(update={
        "stopping_metric": "valid_accuracy"})})  # higher is better: the same values negated give the same answer
    assert ex.grid_stop(by_accuracy, rows + [_row(8, "c4", 3.5), _row(9, "c4", 3.5)]).startswith("grid search")


def test_waves_hold_whole_configurations_in_draw_order():
    s = spec(strategy={"kind": "RandomDiscrete", "max_models": 5, "stopping_rounds": 2},
             space={"model.rate": {"loguniform": [1e-3, 1e-1]}}, seeds=[0, 1])
    trials = ex.expand(s)
    waves = ex.waves(s, trials)
    assert [len(w) for w in waves] == [4, 4, 2] and sum(waves, []) == trials
    assert ex.waves(s.model_copy(update={"strategy": s.strategy.model_copy(update={"stopping_rounds": 0})}),
                    trials) == [trials]


def test_grid_stopping_is_refused_where_h2o_has_none():
    with pytest.raises(ValueError, match="stopping_rounds = 2 stops a RandomDiscrete search"):
        spec(strategy={"kind": "Cartesian", "stopping_rounds": 2})
    with pytest.raises(ValueError, match="stopping_rounds = 2 and halving both"):
        spec(strategy={"kind": "RandomDiscrete", "max_models": 4, "stopping_rounds": 2},
             halving={"rungs": [10, 20]}, space={"model.rate": {"loguniform": [1e-3, 1e-1]}})


def test_sweep_key_ignores_grid_stopping_fields_while_it_is_off():
    # a spec written before grid early stopping keeps its sweep key (its parent run is found again on a rerun)
    from pipeline.sweep import driver

    plain = spec(strategy={"kind": "RandomDiscrete", "max_models": 4}, space={"model.rate": [0.1, 0.2]})
    tolerant = spec(strategy={"kind": "RandomDiscrete", "max_models": 4, "stopping_tolerance": 0.5},
                    space={"model.rate": [0.1, 0.2]})
    stopping = spec(strategy={"kind": "RandomDiscrete", "max_models": 4, "stopping_rounds": 1},
                    space={"model.rate": [0.1, 0.2]})
    assert driver.sweep_key(plain, "d") == driver.sweep_key(tolerant, "d") != driver.sweep_key(stopping, "d")
