"""Feature pictures (W_i/||W_i|| tiled like display_network) and the localization score."""

import numpy as np
import pytest
from PIL import Image

from pipeline.datasets import preprocess
from pipeline.pictures import (
    feature_images, filter_stats, localization_score, max_activation_inputs, tile_images,
    write_feature_picture,
)


def gabors(n, size, seed=0, channels=1):
    """Hand-made Gabor-like filters at random positions, orientations and phases."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(1.5, size - 2.5, 2)
        theta, sigma, freq = rng.uniform(0, np.pi), rng.uniform(1.0, 1.8), rng.uniform(0.15, 0.3)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2)) * np.cos(2 * np.pi * freq * u
                                                                                     + rng.uniform(0, 6.3))
        out.append(np.repeat(g[..., None], channels, axis=2).ravel())
    return np.array(out)


def test_max_activation_inputs_have_unit_norm_and_maximise():
    W = np.random.default_rng(0).normal(size=(6, 10))
    W[2] = 0.0
    X = max_activation_inputs(W)
    np.testing.assert_allclose(np.linalg.norm(X[[0, 1, 3, 4, 5]], axis=1), 1.0)
    assert np.all(X[2] == 0)
    # no other unit-norm input activates unit 0 more (Cauchy-Schwarz), checked on random inputs
    others = np.random.default_rng(1).normal(size=(1000, 10))
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    assert (others @ W[0]).max() < X[0] @ W[0]


def test_tile_grid_shape_borders_and_range():
    tiles = np.random.default_rng(0).normal(size=(10, 4, 3, 3))
    grid = tile_images(tiles)
    assert grid.shape == (3 * 5 + 1, 4 * 4 + 1, 3)  # 4 columns x 3 rows, 1-px borders
    assert grid.min() >= 0 and grid.max() <= 1
    assert np.all(grid[0] == 0) and np.all(grid[:, 0] == 0) and np.all(grid[5] == 0)
    tile = grid[1:5, 1:4]
    assert np.isclose(np.abs(tile * 2 - 1).max(), 1.0)  # each tile uses its full contrast


def test_png_has_the_right_size_grey_and_colour(tmp_path):
    path = write_feature_picture(gabors(25, 8), (8, 8, 1), tmp_path / "g.png", scale=3)
    with Image.open(path) as im:
        assert im.size == ((5 * 9 + 1) * 3, (5 * 9 + 1) * 3) and im.mode == "L"
    path = write_feature_picture(gabors(12, 6, channels=3), (6, 6, 3), tmp_path / "c.png", scale=1)
    with Image.open(path) as im:
        assert im.size == (4 * 7 + 1, 3 * 7 + 1) and im.mode == "RGB"
    path = write_feature_picture(gabors(4, 8), (8, 8, 1), tmp_path / "auto.png")
    with Image.open(path) as im:
        assert im.size[0] >= 400  # default scale makes tiny tiles visible


def test_zca_features_map_back_to_pixel_space():
    rng = np.random.default_rng(0)
    X = rng.random((400, 16)) @ rng.random((16, 16))
    zca = preprocess.fit("zca", X, epsilon=0.1)
    W = rng.normal(size=(5, 16))
    x = max_activation_inputs(W)
    filt = feature_images(W, (4, 4, 1), [zca], mode="filter").reshape(5, 16)
    np.testing.assert_allclose(filt, x @ zca["T"])  # UFLDL draws W * ZCAWhite
    pre = feature_images(W, (4, 4, 1), [zca], mode="preimage").reshape(5, 16)
    # the preimage is the pixel patch (minus the mean patch) that whitens to x
    np.testing.assert_allclose(preprocess.apply(zca, pre + zca["mean"]), x, atol=1e-10)
    raw = feature_images(W, (4, 4, 1)).reshape(5, 16)
    np.testing.assert_allclose(raw, x)


def test_localization_score_separates_gabors_from_noise():
    rng = np.random.default_rng(1)
    for size in (8, 10):
        shape = (size, size, 1)
        assert localization_score(gabors(100, size, seed=size), shape) >= 0.7  # low-frequency ones fail
        assert localization_score(rng.normal(size=(100, size * size)), shape) <= 0.05
        bound = np.sqrt(6 / (2 * size * size + 25 + 1))  # UFLDL's initialisation
        assert localization_score(rng.uniform(-bound, bound, (25, size * size)), shape) <= 0.05
    colour = gabors(50, 8, channels=3)
    assert localization_score(colour, (8, 8, 3)) >= 0.8
    stats = filter_stats(gabors(20, 8), (8, 8, 1))
    assert stats["area"].max() < 0.6 and stats["coherence"].shape == (20,)


def test_errors():
    W = np.zeros((3, 64))
    with pytest.raises(ValueError, match=r"W has 64 inputs per unit but image_shape \(8, 8, 3\) has 192"):
        feature_images(W, (8, 8, 3))
    with pytest.raises(ValueError, match=r"image_shape=None; pass \(h, w, c\)"):
        localization_score(W, None)
    with pytest.raises(ValueError, match=r"mode='pixels'"):
        feature_images(W, (8, 8, 1), mode="pixels")
    with pytest.raises(ValueError, match=r"W has shape \(64,\)"):
        feature_images(W[0], (8, 8, 1))


def _sparse_autoencoder_reference(X, hidden=25, rho=0.01, lam=1e-4, beta=3.0, iters=400, seed=0):
    """UFLDL's sparseAutoencoderCost in plain NumPy + scipy L-BFGS; returns (W1, W1 at init)."""
    from scipy.optimize import minimize

    X = X.T
    v, m = X.shape
    r = np.sqrt(6 / (hidden + v + 1))
    rng = np.random.default_rng(seed)
    theta = np.r_[rng.uniform(-r, r, 2 * hidden * v), np.zeros(hidden + v)]
    k = hidden * v

    def cost(th):
        W1, W2 = th[:k].reshape(hidden, v), th[k:2 * k].reshape(v, hidden)
        b1, b2 = th[2 * k:2 * k + hidden], th[2 * k + hidden:]
        a2 = 1 / (1 + np.exp(-(W1 @ X + b1[:, None])))
        a3 = 1 / (1 + np.exp(-(W2 @ a2 + b2[:, None])))
        rh = a2.mean(axis=1)
        J = (0.5 * ((a3 - X) ** 2).sum() / m + lam / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
             + beta * (rho * np.log(rho / rh) + (1 - rho) * np.log((1 - rho) / (1 - rh))).sum())
        d3 = (a3 - X) * a3 * (1 - a3)
        d2 = (W2.T @ d3 + beta * (-rho / rh + (1 - rho) / (1 - rh))[:, None]) * a2 * (1 - a2)
        grad = np.r_[(d2 @ X.T / m + lam * W1).ravel(), (d3 @ a2.T / m + lam * W2).ravel(),
                     d2.mean(axis=1), d3.mean(axis=1)]
        return J, grad

    result = minimize(cost, theta, jac=True, method="L-BFGS-B", options={"maxiter": iters})
    return result.x[:k].reshape(hidden, v), theta[:k].reshape(hidden, v)


@pytest.mark.slow
def test_ufldl_sparse_autoencoder_on_whitened_patches_learns_edges(tmp_path):
    """The data path + score reproduce UFLDL's claim (measured: 0.80 trained vs 0.0 at init)."""
    from pipeline.datasets import load_data, write_patches

    path = write_patches(tmp_path / "p.parquet", "skimage-grey", size=8, count=10000, seed=0, whiten=True)
    X = load_data({"source": str(path), "preprocessing": ["ufldl_normalize"]}).X_train
    W, W0 = _sparse_autoencoder_reference(X)
    assert localization_score(W0, (8, 8, 1)) <= 0.05
    assert localization_score(W, (8, 8, 1)) >= 0.5
