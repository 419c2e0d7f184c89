"""Preprocessing steps against straightforward NumPy references."""

import json

import numpy as np
import pytest

from pipeline.datasets import preprocess


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    return rng.random((500, 12)) @ rng.random((12, 12))  # correlated, full rank


def _ufldl_reference(patches):
    """UFLDL normalizeData.m, with patches as rows instead of columns."""
    patches = patches - patches.mean(axis=1, keepdims=True)
    pstd = 3 * np.std(patches.ravel(), ddof=1)
    patches = np.maximum(np.minimum(patches, pstd), -pstd) / pstd
    return (patches + 1) * 0.4 + 0.1


def test_ufldl_normalize_matches_reference(X):
    params = preprocess.fit("ufldl_normalize", X)
    out = preprocess.apply(params, X)
    np.testing.assert_allclose(out, _ufldl_reference(X), rtol=0, atol=1e-15)
    assert out.min() >= 0.1 and out.max() <= 0.9


def test_standardize_and_constant_columns(X):
    X = X.copy()
    X[:, 3] = 7.0
    out = preprocess.apply(preprocess.fit("standardize", X), X)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.delete(out.std(axis=0), 3), 1, atol=1e-12)
    assert np.all(out[:, 3] == 0)


def test_scale01(X):
    out = preprocess.apply(preprocess.fit("scale01", X), X)
    np.testing.assert_allclose(out.min(axis=0), 0, atol=1e-15)
    np.testing.assert_allclose(out.max(axis=0), 1, atol=1e-15)


def test_zca_whitens_and_matches_svd_reference(X):
    params = preprocess.fit("zca", X, epsilon=1e-12)
    white = preprocess.apply(params, X)
    np.testing.assert_allclose(white.T @ white / len(X), np.eye(12), atol=1e-6)
    # UFLDL: sigma = x*x'/m; [u,s,v] = svd(sigma); ZCAWhite = u*diag(1./sqrt(diag(s)+eps))*u'
    centred = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(centred.T @ centred / len(X))
    reference = (u @ np.diag(1 / np.sqrt(s + 0.1)) @ u.T)
    np.testing.assert_allclose(preprocess.fit("zca", X, epsilon=0.1)["T"], reference, atol=1e-10)
    np.testing.assert_allclose(params["T"], params["T"].T, atol=1e-10)


def test_zca_inverse_returns_pixels(X):
    params = preprocess.fit("zca", X, epsilon=0.1)
    np.testing.assert_allclose(preprocess.inverse(params, preprocess.apply(params, X)), X, atol=1e-9)
    for name in ("standardize", "scale01"):
        p = preprocess.fit(name, X)
        np.testing.assert_allclose(preprocess.inverse(p, preprocess.apply(p, X)), X, atol=1e-12)


def test_json_round_trip_gives_identical_results(X):
    for name in preprocess.STEP_NAMES:
        params = preprocess.fit(name, X, epsilon=0.1)
        back = preprocess.from_json(json.dumps(json.loads(preprocess.to_json(params))))
        np.testing.assert_array_equal(preprocess.apply(back, X), preprocess.apply(params, X))
        # the JSON-able dict (lists) is accepted directly too
        np.testing.assert_array_equal(preprocess.apply(preprocess.to_jsonable(params), X),
                                      preprocess.apply(params, X))


def test_fit_apply_all_chains_steps(X):
    fitted, out = preprocess.fit_apply_all(["ufldl_normalize", {"name": "zca", "epsilon": 0.01}], X[:400])
    assert [p["name"] for p in fitted] == ["ufldl_normalize", "zca"]
    np.testing.assert_allclose(preprocess.apply_all(fitted, X[:400]), out)
    assert preprocess.apply_all(fitted, X[400:]).shape == (100, 12)


def test_apply_does_not_mutate_input(X):
    before = X.copy()
    for name in preprocess.STEP_NAMES:
        preprocess.apply(preprocess.fit(name, X), X)
    np.testing.assert_array_equal(X, before)


def test_errors(X):
    with pytest.raises(ValueError, match=r"unknown preprocessing step 'whiten'; choose one of"):
        preprocess.fit("whiten", X)
    with pytest.raises(ValueError, match=r"fitted on 12 features but X has 5 columns"):
        preprocess.apply(preprocess.fit("zca", X), X[:, :5])
    with pytest.raises(ValueError, match=r"ufldl_normalize has no inverse"):
        preprocess.inverse(preprocess.fit("ufldl_normalize", X), X)
    centred = X - X.mean(axis=1, keepdims=True)  # rows sum to 0: singular covariance
    with pytest.raises(ValueError, match=r"epsilon=0 on a singular covariance.*set epsilon > 0"):
        preprocess.fit("zca", centred, epsilon=0.0)
    with pytest.raises(ValueError, match=r"X is 1-dimensional.*reshape"):
        preprocess.fit("scale01", X[0])
    with pytest.raises(ValueError, match=r"X has no rows"):
        preprocess.fit("standardize", X[:0])
