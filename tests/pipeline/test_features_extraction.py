"""pipeline.features.extraction: folded convolution weights reproduce the autoencoder's hidden layer."""

import numpy as np
import pytest

from features_helpers import digits, trained  # noqa: F401 (digits is a fixture)
from pipeline.datasets import preprocess
from pipeline.features import ConvSpec, affine_preprocessing, extract_features, fold_autoencoder


@pytest.mark.parametrize("steps,standardize", [([], False), ([{"name": "zca", "epsilon": 0.1}], True),
                                               (["standardize"], True)])
def test_whole_image_features_equal_deepfeatures(digits, steps, standardize):
    # self-taught case: a patch as large as the image, pool 1 -> the hidden layer itself
    X = digits.reshape(len(digits), -1)
    model, fitted, Xp = trained(X, steps, standardize)
    W, b, act = fold_autoencoder(model, fitted, [8, 8, 1])
    before = digits.copy()
    got = extract_features(digits, W, b, act, ConvSpec(pool=1))
    np.testing.assert_array_equal(digits, before)
    np.testing.assert_allclose(got, model.deepfeatures(Xp), atol=2e-5)


def test_conv_windows_equal_deepfeatures_of_patches(digits):
    patches = np.lib.stride_tricks.sliding_window_view(digits[:3], (4, 4), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 16)  # (image, i, j) rows
    model, fitted, _ = trained(patches, [{"name": "zca", "epsilon": 0.01}], True)
    W, b, act = fold_autoencoder(model, fitted, [4, 4, 1])
    got = extract_features(digits[:3], W, b, act, ConvSpec(pool=1))  # (3, K * 5 * 5)
    want = model.deepfeatures(preprocess.apply_all(fitted, patches)).reshape(3, 5, 5, 6)
    np.testing.assert_allclose(got.reshape(3, 6, 5, 5), want.transpose(0, 3, 1, 2), atol=2e-5)


def test_affine_preprocessing_is_pure_and_matches_the_steps(digits):
    X = digits.reshape(len(digits), -1).astype(np.float64)
    fitted, Xp = preprocess.fit_apply_all([{"name": "zca", "epsilon": 0.1}], X)
    steps = [preprocess.to_jsonable(p) for p in fitted]
    scaler = {"offset": [0.5] * 64, "scale": [2.0] * 64}
    frozen = repr(steps), repr(scaler)
    A, c = affine_preprocessing(steps, scaler, 64)
    assert (repr(steps), repr(scaler)) == frozen
    np.testing.assert_allclose(X[:5] @ A + c, (Xp[:5] - 0.5) / 2.0, atol=1e-6)
