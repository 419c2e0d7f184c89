"""pipeline.features.config: validation of the features config."""

import pytest
import yaml

from features_helpers import AE, features_config
from pipeline.config import ConfigError
from pipeline.features import load_features_config


@pytest.mark.parametrize("change,match", [
    ({"autoencoder": {"model": "a.npz", "run_id": "abc"}}, "exactly one of model"),
    ({"images": {"source": "digits", "preprocessing": ["zca"]}}, "images.preprocessing must be empty"),
    ({"crops": {"photos": ["astronaut", "coffee"]}}, "exactly one labelled image source"),
    ({"conv": {"pool": 0}}, "greater than 0"),
    ({"autoencoder": {"train": {"photos": "astronaut", "model": AE}}}, "photos needs patches"),
    ({"autoencoder": {"train": {"model": AE}}}, "exactly one of data \\(a DataSpec\\) or photos"),
    ({"classifier": {"hidden": [], "epochs": -1}}, "greater than 0"),
])
def test_config_errors(tmp_path, change, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        load_features_config(features_config(tmp_path, **change))


def test_yaml_examples_validate():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "examples"
    for name in ("conv_pool.yaml", "self_taught.yaml", "colour_conv.yaml"):
        if (root / name).exists():
            load_features_config(root / name)
            assert yaml.safe_load((root / name).read_text())["name"]
