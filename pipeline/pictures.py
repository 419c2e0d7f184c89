"""Feature pictures of a first layer, and a number that says "edge detectors".

For hidden unit i with incoming weights ``W[i]`` the input with ``||x|| <= 1``
that maximally activates it is ``x = W[i] / ||W[i]||`` (UFLDL "Visualizing a
Trained Autoencoder"; the lab's claim). :func:`feature_images` computes it and
maps it to pixel space through the preprocessing the model was trained on;
:func:`tile_images` lays the results out like UFLDL's ``display_network``;
:func:`write_feature_picture` writes the PNG (Pillow, exact pixel size).

Pixel space for preprocessed inputs (``mode``)
----------------------------------------------
``"filter"`` (default; what UFLDL draws, ``W * ZCAWhite``): the weights that act
on raw pixels, ``x_i @ J`` with ``J`` the linear part of the preprocessing
(``T`` for zca, ``diag(1/sd)`` for standardize, ``diag(1/range)`` for scale01,
mean removal for ufldl_normalize). Whitened features show as sharp edges.
``"preimage"``: the pixel patch that preprocesses to ``x_i`` (inverse linear
parts, ``T^-1 x_i`` for zca; ufldl_normalize has no inverse and is skipped),
i.e. the maximally activating input itself. Offsets are dropped: every tile is
contrast-normalised anyway.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datasets import preprocess

#: Thresholds of :func:`localization_score` (see its docstring).
AREA_MAX = 0.8
COHERENCE_MIN = 0.6


def _check_w(W, image_shape) -> tuple[np.ndarray, tuple[int, int, int]]:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W has shape {W.shape}; expected (n_hidden, n_in), a first-layer weight matrix.")
    if image_shape is None or len(image_shape) != 3:
        raise ValueError(f"image_shape={image_shape!r}; pass (h, w, c) of the inputs, e.g. (8, 8, 1). "
                         "Pictures need image inputs (a patch/image dataset).")
    h, w, c = (int(v) for v in image_shape)
    if h * w * c != W.shape[1]:
        raise ValueError(f"W has {W.shape[1]} inputs per unit but image_shape {(h, w, c)} has {h * w * c} "
                         "pixels; pass the shape of the data the model was trained on.")
    return W, (h, w, c)


def max_activation_inputs(W) -> np.ndarray:
    """``W[i] / ||W[i]||`` per row (zero rows stay zero); shape (n_hidden, n_in)."""
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    return W / np.where(norms > 0, norms, 1.0)


def _linear_part(params: dict, X: np.ndarray, mode: str) -> np.ndarray:
    name = params["name"]
    if mode == "filter":
        if name == "zca":
            return X @ np.asarray(params["T"], dtype=np.float64).T
        if name in ("standardize", "scale01"):
            return X / np.asarray(params["sd" if name == "standardize" else "range"], dtype=np.float64)
        return X - X.mean(axis=1, keepdims=True)  # ufldl_normalize: per-patch mean removal
    if name == "ufldl_normalize":
        return X
    return preprocess.inverse(params, X) - preprocess.inverse(params, np.zeros((1, X.shape[1])))


def feature_images(W, image_shape, preprocessing=None, mode: str = "filter") -> np.ndarray:
    """Maximally activating inputs of every unit, in pixel space.

    Parameters
    ----------
    W : ndarray of shape (n_hidden, n_in)
        First-layer weights (``model.layer_params(0)[0]``).
    image_shape : tuple (h, w, c)
        With ``h * w * c == n_in``; pixels flattened in C order of (h, w, c).
    preprocessing : list of dict, optional
        Fitted steps the model's inputs went through (``meta["preprocessing"]``).
    mode : {"filter", "preimage"}
        See the module docstring.

    Returns
    -------
    ndarray of shape (n_hidden, h, w, c)
    """
    W, shape = _check_w(W, image_shape)
    if mode not in ("filter", "preimage"):
        raise ValueError(f"mode={mode!r}; use 'filter' (UFLDL's W*ZCAWhite) or 'preimage'.")
    X = max_activation_inputs(W)
    for params in reversed(list(preprocessing or [])):
        X = _linear_part(params, X, mode)
    return X.reshape((len(X), *shape))


def tile_images(tiles, cols: int | None = None, border: int = 1) -> np.ndarray:
    """Tile images into a grid like UFLDL's ``display_network``.

    The global mean is removed, each tile is divided by its own max ``|value|``
    (contrast normalisation, into [-1, 1]) and mapped to [0, 1]; tiles are
    separated by ``border`` black pixels.

    Parameters
    ----------
    tiles : ndarray of shape (n, h, w, c)
    cols : int, optional
        Grid columns; default ``ceil(sqrt(n))``.

    Returns
    -------
    ndarray of shape (rows*(h+border)+border, cols*(w+border)+border, c) in [0, 1]
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    if tiles.ndim != 4 or len(tiles) == 0:
        raise ValueError(f"tiles has shape {tiles.shape}; expected (n >= 1, h, w, c).")
    n, h, w, c = tiles.shape
    cols = int(np.ceil(np.sqrt(n))) if cols is None else int(cols)
    rows = int(np.ceil(n / cols))
    tiles = tiles - tiles.mean()
    peak = np.abs(tiles).reshape(n, -1).max(axis=1)
    tiles = tiles / np.where(peak > 0, peak, 1.0)[:, None, None, None]
    grid = np.zeros((rows * (h + border) + border, cols * (w + border) + border, c))
    for k in range(n):
        r, q = divmod(k, cols)
        top, left = border + r * (h + border), border + q * (w + border)
        grid[top:top + h, left:left + w] = (tiles[k] + 1.0) / 2.0
    return grid


def save_png(grid, path, scale: int = 1) -> Path:
    """Write a [0, 1] grid (H, W, c) as an 8-bit PNG, upscaled ``scale``x (nearest)."""
    from PIL import Image

    grid = np.asarray(grid)
    pixels = np.clip(np.round(grid * 255), 0, 255).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)
    return path


def write_feature_picture(W, image_shape, path, preprocessing=None, mode: str = "filter",
                          scale: int | None = None) -> Path:
    """Feature images of ``W`` tiled into a PNG at ``path``.

    ``scale`` defaults to the integer upscaling that makes the picture at
    least ~400 pixels wide (8x8 tiles are otherwise too small to see).
    """
    grid = tile_images(feature_images(W, image_shape, preprocessing, mode))
    scale = scale or max(1, int(np.ceil(400 / grid.shape[1])))
    return save_png(grid, path, scale)


def filter_stats(W, image_shape) -> dict:
    """Per-filter spatial area and orientation coherence (see :func:`localization_score`).

    Returns
    -------
    dict with ``area`` and ``coherence``, each ndarray of shape (n_hidden,)
    """
    W, (h, w, c) = _check_w(W, image_shape)
    F = W.reshape(len(W), h, w, c)
    F = F - F.mean(axis=(1, 2, 3), keepdims=True)
    energy = (F ** 2).sum(axis=3)
    total = energy.sum(axis=(1, 2))
    p = energy / np.where(total > 0, total, 1.0)[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    my, mx = (p * yy).sum(axis=(1, 2)), (p * xx).sum(axis=(1, 2))
    dy, dx = yy - my[:, None, None], xx - mx[:, None, None]
    cov_det = (p * dy * dy).sum((1, 2)) * (p * dx * dx).sum((1, 2)) - (p * dy * dx).sum((1, 2)) ** 2
    uniform = np.sqrt((h * h - 1) / 12.0 * (w * w - 1) / 12.0)
    area = np.sqrt(np.clip(cov_det, 0.0, None)) / uniform
    gy, gx = np.gradient(F, axis=(1, 2))
    jyy, jxx, jxy = (gy * gy).sum((1, 2, 3)), (gx * gx).sum((1, 2, 3)), (gx * gy).sum((1, 2, 3))
    spread = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2)
    trace = jxx + jyy
    coherence = spread / np.where(trace > 0, trace, 1.0)
    return {"area": np.where(total > 0, area, 1.0), "coherence": coherence}


def localization_score(W, image_shape, area_max: float = AREA_MAX,
                       coherence_min: float = COHERENCE_MIN) -> float:
    """Share of filters that are localized AND oriented (edge-detector-like).

    Each filter (a row of ``W`` reshaped to (h, w, c), its mean removed) is
    measured twice:

    - **area**: ``sqrt(det C) / sqrt(det C_uniform)`` where ``C`` is the 2x2
      covariance of pixel coordinates weighted by the filter's energy
      (``sum_c w**2``) and ``C_uniform`` that of a flat energy map. A filter
      spread over the whole patch (noise) gives about 1; a blob or an edge
      (narrow across its direction) gives well under 1.
    - **coherence**: ``(l1 - l2) / (l1 + l2)`` of the structure tensor
      ``sum grad(w) grad(w)^T`` (eigenvalues ``l1 >= l2``, summed over
      channels). 1 = all gradients in one direction (one orientation), 0 =
      no preferred direction.

    A filter counts if ``area <= area_max`` and ``coherence >= coherence_min``
    (defaults 0.8 and 0.6). Measured: 0 of 20,000 Gaussian-noise filters
    count at 8x8, 10x10, 8x8x3 and 28x28 (5 in 100,000 at 6x6); hand-made
    Gabors score ~0.9; UFLDL's sparse autoencoder (25 hidden, 400 L-BFGS
    iterations, whitened + normalised 8x8 patches) scores 0.8, its
    initialisation 0. Its long edge filters have coherence 0.8-0.96 and
    area 0.5-0.8; area alone does not separate them from noise (~0.85-1.0).

    Parameters
    ----------
    W : ndarray of shape (n_hidden, n_in)
    image_shape : tuple (h, w, c)

    Returns
    -------
    float in [0, 1]
    """
    stats = filter_stats(W, image_shape)
    good = (stats["area"] <= area_max) & (stats["coherence"] >= coherence_min)
    return float(good.mean())


# ---------------------------------------------------------------- a model's picture inputs
def _find_key(tree, key, depth: int = 3):
    """First value stored under ``key`` in nested dicts (the model's ``extra``)."""
    if not isinstance(tree, dict) or depth < 0:
        return None
    if tree.get(key) is not None:
        return tree[key]
    for value in tree.values():
        found = _find_key(value, key, depth - 1)
        if found is not None:
            return found
    return None


def picture_steps(model, preprocessing) -> list:
    """The data's fitted preprocessing steps plus the model's own input scaling, in order."""
    steps = list(preprocessing or [])
    scaler = getattr(model, "scaler_", None)
    if scaler and (any(o != 0 for o in scaler["offset"]) or any(s != 1 for s in scaler["scale"])):
        steps.append({"name": "standardize", "mean": scaler["offset"], "sd": scaler["scale"]})
    return steps


def feature_inputs(model, layer: int = 0, image_shape=None):
    """(W, image_shape, preprocessing) for drawing ``model``'s first layer.

    Raises
    ------
    ValueError
        For ``layer != 0`` or a model without a known image shape.
    """
    if layer != 0:
        raise ValueError(
            f"layer {layer} is not connected to the pixels, so 'the input that maximally activates a "
            "unit' is no longer W_i/||W_i|| and cannot be drawn as one image per unit; sweepnet draws "
            "only layer 0 (the first hidden layer). Use --layer 0.")
    extra = getattr(model, "extra_", {}) or {}
    # the fitted steps live in the data meta; the config holds only their unfitted spec
    fitted = extra.get("data_meta") or {}
    shape = image_shape or _find_key(fitted, "image_shape") or _find_key(extra, "image_shape")
    if shape is None:
        raise ValueError("the model file records no image_shape (it was not trained on an image/patch "
                         "dataset); pass --image-shape H,W,C, e.g. --image-shape 8,8,1.")
    steps = picture_steps(model, _find_key(fitted, "preprocessing") or _find_key(extra, "preprocessing"))
    W, _ = model.layer_params(0)
    return W, tuple(int(v) for v in shape), steps
