"""`sweepnet train` / `gradcheck` on the shipped examples, through the real CLI entry point."""

from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from pipeline.model import DeepLearningModel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_train_xor_prints_h2o_style_predictions_and_saves(tmp_path, capsys):
    out = tmp_path / "xor.npz"
    assert main(["train", str(EXAMPLES / "xor.yaml"), "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "predictions on the training rows (h2o.predict)" in text
    values = [float(line.split()[1]) for line in text.split("predict\n")[-1].splitlines()[:4]]
    assert np.all(np.sign(values) == [-1, 1, 1, -1])
    model = DeepLearningModel.load(out)
    assert model.extra_["config"]["model"]["activation"] == "Tanh"


def test_digits_example_reaches_the_issue_accuracy(capsys):
    assert main(["train", str(EXAMPLES / "digits.yaml"), "--quiet"]) == 0
    text = capsys.readouterr().out
    accuracy = float(next(line.split()[1] for line in text.splitlines() if line.startswith("test_accuracy")))
    assert accuracy >= 0.92


def test_gradcheck_passes_on_examples(capsys):
    for name in ("xor.yaml", "digits.yaml"):
        assert main(["gradcheck", str(EXAMPLES / name)]) == 0
    assert capsys.readouterr().out.count("(OK") == 2


def test_bad_override_and_missing_file_are_clear(capsys):
    assert main(["train", str(EXAMPLES / "xor.yaml"), "--set", "model.activation=tanh"]) == 1
    assert "model.activation = 'tanh': not allowed" in capsys.readouterr().err
    assert main(["train", "nope.yaml"]) == 1
    assert "config file nope.yaml does not exist" in capsys.readouterr().err


def test_help_lists_every_model_field(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in ("input_dropout_ratio", "initial_weight_distribution", "max_w2", "sparsity_beta"):
        assert field in text
