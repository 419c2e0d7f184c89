"""``sweepnet show``: a real saved model in, a PNG out; deeper layers refused."""

import numpy as np
import pytest
from PIL import Image

model_module = pytest.importorskip("pipeline.model")

from app.cli import main as sweepnet  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.random((40, 16))
    model = model_module.DeepLearningModel(autoencoder=True, hidden=[6, 3], activation="Tanh", epochs=1,
                                           seed=0, standardize=False)
    model.fit(X)
    path = tmp_path_factory.mktemp("show") / "ae.npz"
    model.save(path, extra={"data": {"image_shape": [4, 4, 1], "preprocessing": []}})
    return path


def test_show_writes_png_and_prints_score(model_path, tmp_path, capsys):
    out = tmp_path / "f.png"
    assert sweepnet(["show", str(model_path), "--out", str(out), "--scale", "2"]) == 0
    with Image.open(out) as im:
        assert im.size == ((3 * 5 + 1) * 2, (2 * 5 + 1) * 2)  # 6 units: 3 columns x 2 rows of 4x4
    text = capsys.readouterr().out
    assert "6 features of 4x4x1" in text and "localization score" in text


def test_show_refuses_deeper_layers(model_path, tmp_path, capsys):
    assert sweepnet(["show", str(model_path), "--out", str(tmp_path / "x.png"), "--layer", "1"]) == 1
    assert "layer 1 is not connected to the pixels" in capsys.readouterr().err


def test_show_needs_an_image_shape(tmp_path, capsys):
    model = model_module.DeepLearningModel(autoencoder=True, hidden=[3], epochs=1, seed=0)
    model.fit(np.random.default_rng(1).random((20, 4)))
    path = model.save(tmp_path / "m.npz")
    assert sweepnet(["show", str(path), "--out", str(tmp_path / "x.png")]) == 1
    assert "records no image_shape" in capsys.readouterr().err
    assert sweepnet(["show", str(path), "--out", str(tmp_path / "y.png"), "--image-shape", "2,2"]) == 0
    assert sweepnet(["show", str(path), "--out", str(tmp_path / "z.png"), "--image-shape", "2,x"]) == 1
    assert "write H,W,C" in capsys.readouterr().err
