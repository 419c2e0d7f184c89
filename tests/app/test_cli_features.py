"""``sweepnet features``: the pooled-vs-raw table, the confusion matrix, and a refused config (exit 2)."""

import yaml

from app.cli import main
from tests.pipeline.features_helpers import features_config


def test_cli_features_prints_both_accuracies(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(features_config(tmp_path)))
    assert main(["features", str(path), "--set", "conv.pool=5", "--out", str(tmp_path / "cli")]) == 0
    text = capsys.readouterr().out
    assert "| pooled features | 8 |" in text and "| raw pixels | 64 |" in text  # 8 features x 1 x 1
    assert "confusion matrix" in text and (tmp_path / "cli" / "classifier.npz").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(features_config(tmp_path, conv={"pool": 0})))
    assert main(["features", str(bad)]) == 2
    assert "greater than 0" in capsys.readouterr().err
