"""pipeline.sweep.gate: one gradient check per structural class of the space, within a bound."""

from __future__ import annotations

import pytest

from pipeline.sweep import driver, gate

DIGITS_GRID = "examples/sweeps/digits_grid.yaml"


def wrong_for(activation: str):
    """A gradient check that reports a wrong gradient for one hidden activation (a test-only hook)."""
    from pipeline.gradcheck import check_config

    def check(config):
        return 1.0 if config["model"].get("activation") == activation else check_config(config)
    return check


def test_every_structural_class_of_the_digits_grid_is_checked_tanh_with_dropout_included():
    _, trials = driver.validate(DIGITS_GRID)
    result = gate.gradient_check(trials)
    # activation x l1 on/off x input dropout on/off: 8 classes; the 3 seeds share theirs
    assert len(result.checked) == 8 and not result.unchecked
    acts = {t.axes["model.activation"] for t in trials if t.config_key in result.checked}
    assert acts == {"RectifierWithDropout", "TanhWithDropout"}
    assert all(rel <= gate.GRAD_TOL for rel in result.checked.values())
    assert result.note == "gradient checked: 8 of 8 structural classes"


def test_a_wrong_gradient_in_a_class_past_the_first_four_configurations_is_refused():
    _, trials = driver.validate(DIGITS_GRID)
    first_four = {t.config_key for t in trials[:12]}  # 4 configurations x 3 seeds, all RectifierWithDropout
    assert {t.axes["model.activation"] for t in trials if t.config_key in first_four} == {"RectifierWithDropout"}
    with pytest.raises(driver.SweepRefused, match=r"gradient check failed for trial \d+ \(.*TanhWithDropout.*\): "
                                                  r"relative difference 1 > 1e-06"):
        gate.gradient_check(trials, check=wrong_for("TanhWithDropout"))


def test_classes_ignore_what_does_not_change_the_checked_objective():
    base = {"name": "x", "data": {"source": "xor"},
            "model": {"activation": "Tanh", "hidden": [8], "epochs": 5, "rate": 0.1, "optimizer": "sgd"}}
    _, trials = driver.validate({"name": "classes", "base": base, "seeds": [1, 2],
                                 "space": {"model.rate": [0.1, 0.5], "model.hidden": [[8], [16], [2]],
                                           "model.l2": [0.0, 1e-3, 1e-2]}})
    classes = {gate.structural_class(t.config) for t in trials}
    # rate and seed never matter; [8] and [16] are both checked as [4] units; l2 is on or off
    assert len(classes) == 2 * 2


def test_past_the_cap_the_unchecked_classes_are_named_and_not_refused():
    _, trials = driver.validate(DIGITS_GRID)
    result = gate.gradient_check(trials, max_classes=3, check=wrong_for("TanhWithDropout"))
    assert len(result.checked) == 3 and len(result.unchecked) == 5
    assert result.note.startswith("gradient checked: 3 of 8 structural classes (cap 3 classes or ")
    assert "not checked: 5 classes, e.g. trial " in result.note and "TanhWithDropout" in result.note
