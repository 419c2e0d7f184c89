"""pipeline.config's shared helpers: dotted paths, the YAML loader, validation with overrides."""

import pytest
import yaml

from pipeline.config import (ConfigError, ModelSpec, get_dotted, load_config, read_yaml, set_dotted,
                             validate_config)


def test_set_dotted_creates_mappings_and_get_dotted_reads_them():
    raw = {"model": {"hidden": [2]}}
    set_dotted(raw, "model.rate", 0.1)
    set_dotted(raw, "data.split.test", 0.2)
    assert raw == {"model": {"hidden": [2], "rate": 0.1}, "data": {"split": {"test": 0.2}}}
    assert get_dotted(raw, "data.split.test") == 0.2
    assert get_dotted(raw, "model.epochs", 5) == 5 and get_dotted(raw, "model.hidden.x") is None


def test_set_dotted_through_a_value_names_the_path():
    with pytest.raises(ConfigError, match=r"cannot set 'model\.hidden\.x': 'hidden' holds \[2\], not a mapping"):
        set_dotted({"model": {"hidden": [2]}}, "model.hidden.x", 1)
    assert issubclass(ConfigError, ValueError)  # the sweep expansion reports it as a ValueError


def test_read_yaml(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nmodel: {hidden: [3]}\n")
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "a.yaml") == {"name": "a", "model": {"hidden": [3]}}
    assert read_yaml(str(tmp_path / "empty.yaml")) is None


def test_validate_config_applies_overrides_and_explains_errors():
    raw = {"hidden": [3]}
    spec = validate_config(ModelSpec, raw, {"epochs": 7})
    assert spec.epochs == 7 and raw["epochs"] == 7
    with pytest.raises(ConfigError, match="where.yaml"):
        validate_config(ModelSpec, {"hidden": [3]}, {"epochs": -1}, "where.yaml")


def test_load_config_goes_through_the_same_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "c", "model": {"hidden": [2]}, "data": {"source": "xor"}}))
    assert load_config(path, {"model.epochs": 3}).model.epochs == 3


def test_h2o_stops_resolve_to_h2o_defaults_except_under_lbfgs_and_refuse_bad_values():
    assert ModelSpec().resolved_stops == {"overwrite_with_best_model": True, "classification_stop": 0.0,
                                          "regression_stop": 1e-6}
    assert ModelSpec(optimizer="lbfgs").resolved_stops == {"overwrite_with_best_model": False,
                                                           "classification_stop": -1.0, "regression_stop": -1.0}
    assert ModelSpec(optimizer="lbfgs", regression_stop=0.5).resolved_stops["regression_stop"] == 0.5
    with pytest.raises(ValueError, match=r"classification_stop=-0.5: use -1 to turn the stop off"):
        ModelSpec(classification_stop=-0.5)
