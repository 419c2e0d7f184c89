"""Fold an autoencoder's first layer into convolution weights; pooled features of one shard.

The preprocessing and input scaling are folded into the weights (``W' x + b'`` equals the hidden
pre-activation of the preprocessed patch), so the convolution runs over raw pixels.
:func:`extract_features` is the pure unit of work per shard.
"""

from __future__ import annotations

import numpy as np

from kernels import CONV_ACTIVATIONS, convolve_and_pool, fold_whitening
from pipeline.config import ACTIVATIONS
from pipeline.datasets import preprocess
from pipeline.features.config import ConvSpec


def affine_preprocessing(steps, scaler, n_inputs, probe=1e-3):
    """(A, c) with ``scaled(preprocessed(x)) == x @ A + c`` for the affine part of the steps.

    Probed column by column with ``probe * e_i``; exact for zca, standardize,
    scale01 and the input scaler; for ufldl_normalize it keeps the patch-mean
    removal and rescaling but not the clipping (a convolution cannot clip).
    """
    offset, scale = np.asarray(scaler["offset"]), np.asarray(scaler["scale"])

    def pre(X):
        X = preprocess.apply_all(steps, X) if steps else X
        return (X - offset) / scale
    base = pre(np.zeros((1, n_inputs)))
    A = (pre(probe * np.eye(n_inputs)) - base) / probe
    return A, base[0]


def fold_autoencoder(model, steps, patch_shape):
    """Conv weights of the autoencoder's first layer over raw pixels.

    Returns
    -------
    W : ndarray of shape (K, p * p * c), b : ndarray of shape (K,), activation : str
    """
    if getattr(model, "task_", None) != "autoencoder" and not model.spec.autoencoder:
        raise ValueError("the feature model is not an autoencoder; train it with autoencoder: true")
    act = ACTIVATIONS[model.spec.activation][0]
    if act not in CONV_ACTIVATIONS:
        raise ValueError(f"hidden activation {model.spec.activation} cannot be convolved; "
                         f"use one of Sigmoid, Tanh, Rectifier")
    W, b = (a.astype(np.float64) for a in model.layer_params(0))
    if W.shape[1] != int(np.prod(patch_shape)):
        raise ValueError(f"the autoencoder has {W.shape[1]} inputs but its patches are {patch_shape}")
    A, c = affine_preprocessing(steps, model.scaler_, W.shape[1])
    Wf, bf = fold_whitening(W, b + W @ c, A.T)
    return Wf, bf, act


def extract_features(images, W, b, activation, conv: ConvSpec):
    """Pooled features of one shard: images (n, H, W, C) -> (n, K * PH * PW) float32.

    Columns are in (feature, pooled row, pooled col) C order. Pure: inputs
    are not modified. BLAS is held to one thread while Numba threads run.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        pooled = convolve_and_pool(np.ascontiguousarray(images, np.float32), W.astype(np.float32),
                                   b.astype(np.float32), conv.pool, conv.mode, activation, conv.stride,
                                   conv.remainder, conv.chunk_images, conv.chunk_features)
    return pooled.reshape(len(images), -1)
