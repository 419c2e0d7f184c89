import numpy as np
import pytest

import naive_conv as naive
from kernels.conv import conv2d_backward, conv2d_forward, convolve_and_pool, fold_whitening
from kernels.pool import mean_pool2d_backward, pool2d

ACTS = ["sigmoid", "tanh", "rectifier", "identity"]
# (N, H, W, C, K, p): 1x1 features, full-image features, non-square images, colour
SHAPES = [(1, 3, 3, 1, 1, 1), (2, 5, 4, 1, 2, 2), (2, 6, 7, 3, 3, 3), (1, 4, 4, 2, 2, 4),
          (3, 7, 5, 2, 4, 2)]


def _case(shape, seed=0, dtype=np.float64):
    N, H, W, C, K, p = shape
    rng = np.random.default_rng(seed)
    x = rng.random((N, H, W, C))
    Wt = rng.standard_normal((K, p * p * C))
    b = rng.standard_normal(K)
    return x.astype(dtype), Wt.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ACTS)
def test_forward_matches_naive(shape, activation):
    x, W, b = _case(shape)
    want = naive.conv(x, W, b, activation)
    for par in (False, True):
        np.testing.assert_allclose(conv2d_forward(x, W, b, activation, parallel=par), want,
                                   rtol=1e-12, atol=1e-13)
        got32 = conv2d_forward(*(a.astype(np.float32) for a in (x, W, b)), activation,
                               parallel=par)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, want, rtol=1e-5, atol=2e-6)


def test_feature_layout_is_row_col_channel():
    # a one-hot feature at (r=1, c=0, ch=2) of a 2x2x3 patch reads pixel (i + 1, j, 2)
    x = np.random.default_rng(1).random((1, 4, 5, 3))
    W = np.zeros((1, 2, 2, 3))
    W[0, 1, 0, 2] = 1.0
    out = conv2d_forward(x, W.reshape(1, -1), np.zeros(1), "identity")
    np.testing.assert_array_equal(out[0, 0], x[0, 1:4, 0:4, 2])


@pytest.mark.parametrize("activation", ["sigmoid", "identity"])
def test_fold_whitening_matches_whitened_definition(activation):
    x, W, b = _case((2, 5, 5, 2, 3, 2), seed=2)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((8, 8))
    T = A @ A.T / 8 + np.eye(8)  # a symmetric, ZCA-like matrix
    mean = rng.random(8)
    Wf, bf = fold_whitening(W, b, T, mean)
    want = naive.conv_whitened(x, W, b, T, mean, activation)
    np.testing.assert_allclose(conv2d_forward(x, Wf, bf, activation), want, rtol=1e-11,
                               atol=1e-12)
    Wi, bi = fold_whitening(W, b)
    np.testing.assert_array_equal(Wi, W)
    np.testing.assert_array_equal(bi, b)


def test_float32_sigmoid_accuracy_over_wide_range():
    # the vectorised float32 exp: relative error and saturation at +-100
    z = np.linspace(-100, 100, 20001)
    x = z.reshape(1, 1, -1, 1).astype(np.float32)
    out = conv2d_forward(x, np.ones((1, 1), np.float32), np.zeros(1, np.float32), "sigmoid")
    want = 1.0 / (1.0 + np.exp(-z.astype(np.float32).astype(np.float64)))
    got = out.ravel().astype(np.float64)
    assert np.isfinite(got).all()
    big = want > 1e-30
    assert np.max(np.abs(got[big] - want[big]) / want[big]) < 1e-5
    assert got[-1] == 1.0 and got[0] < 1e-37


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,pool,stride,rem", [("mean", 2, None, "drop"), ("max", 3, 2, "partial"),
                                                  ("mean", 3, 1, "drop")])
def test_convolve_and_pool_equals_composition(dtype, mode, pool, stride, rem):
    x, W, b = _case((5, 9, 8, 3, 7, 3), seed=4, dtype=dtype)
    before = x.copy()
    want = pool2d(conv2d_forward(x, W, b, "sigmoid"), pool, stride, mode, rem)
    for ci, cf, par in [(2, 3, True), (5, 7, False), (1, 1, True), (10, 50, True)]:
        got = convolve_and_pool(x, W, b, pool, mode, "sigmoid", stride, rem, chunk_images=ci,
                                chunk_features=cf, parallel=par)
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-13)
    np.testing.assert_array_equal(x, before)


def test_ufldl_pooled_shape():
    x, W, b = _case((2, 64, 64, 3, 5, 8), seed=5, dtype=np.float32)
    assert convolve_and_pool(x, W, b, 19).shape == (2, 5, 3, 3)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "identity"])
def test_backward_numerical(activation):
    x, W, b = _case((2, 5, 4, 2, 3, 2), seed=6)
    W *= 0.5
    R = np.random.default_rng(7).standard_normal(conv2d_forward(x, W, b, activation).shape)

    def loss():
        return float(np.sum(R * conv2d_forward(x, W, b, activation, parallel=False)))

    gW, gb, gX = conv2d_backward(x, W, conv2d_forward(x, W, b, activation), R, activation)
    for ana, arr in ((gW, W), (gb, b), (gX, x)):
        assert naive.rel_diff(naive.numerical_gradient(loss, arr), ana) < 1e-9


def test_backward_rectifier_and_no_input_grad():
    x, W, b = _case((1, 4, 4, 1, 2, 2), seed=8)
    b += 3.0  # all units active: away from the kink, so central differences are exact
    R = np.ones((1, 2, 3, 3))
    loss = lambda: float(np.sum(R * conv2d_forward(x, W, b, "rectifier")))  # noqa: E731
    gW, gb, gX = conv2d_backward(x, W, conv2d_forward(x, W, b, "rectifier"), R, "rectifier",
                                 input_grad=False)
    assert gX is None
    assert naive.rel_diff(naive.numerical_gradient(loss, W), gW) < 1e-9
    assert naive.rel_diff(naive.numerical_gradient(loss, b), gb) < 1e-9


def test_conv_then_mean_pool_chain_rule():
    # the two backward passes compose: d sum(R * pool(conv(x))) / dW
    x, W, b = _case((2, 6, 6, 1, 2, 3), seed=9)
    R = np.random.default_rng(10).standard_normal((2, 2, 2, 2))
    loss = lambda: float(np.sum(R * convolve_and_pool(x, W, b, 2, parallel=False)))  # noqa: E731
    A = conv2d_forward(x, W, b)
    gW, gb, _ = conv2d_backward(x, W, A, mean_pool2d_backward(R, A.shape, 2), input_grad=False)
    assert naive.rel_diff(naive.numerical_gradient(loss, W), gW) < 1e-9
    assert naive.rel_diff(naive.numerical_gradient(loss, b), gb) < 1e-9


X4 = np.zeros((2, 5, 5, 1))
W4 = np.zeros((3, 4))
B3 = np.zeros(3)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: conv2d_forward(X4.tolist(), W4, B3), TypeError, "images must be a numpy.ndarray"),
    (lambda: conv2d_forward(X4[0], W4, B3), ValueError, "images is 3-dimensional"),
    (lambda: conv2d_forward(X4.astype(np.int32), W4, B3), TypeError, "images has dtype int32"),
    (lambda: conv2d_forward(X4, W4.astype(np.float32), B3), TypeError, "W has dtype float32"),
    (lambda: conv2d_forward(X4, np.zeros((3, 5)), B3), ValueError, "not p\\*p\\*C"),
    (lambda: conv2d_forward(X4, np.zeros((3, 36)), B3), ValueError, "6x6 features do not fit"),
    (lambda: conv2d_forward(X4, W4, np.zeros(2)), ValueError, "b must have shape \\(3,\\)"),
    (lambda: conv2d_forward(X4, W4 + np.nan, B3), ValueError, "NaN or inf"),
    (lambda: conv2d_forward(X4, W4, B3, "softplus"), ValueError, "activation must be one of"),
    (lambda: convolve_and_pool(X4, W4, B3, 5), ValueError, "pool=5 is larger than the map"),
    (lambda: convolve_and_pool(X4, W4, B3, 2, chunk_features=0), ValueError,
     "chunk_features must be >= 1"),
    (lambda: convolve_and_pool(X4, W4, B3, 2, mode="sum"), ValueError, "mode must be one of"),
    (lambda: conv2d_backward(X4, W4, np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 3, 4))),
     ValueError, "grad_out has shape"),
    (lambda: fold_whitening(W4, B3, np.eye(3)), ValueError, "T must be \\(4, 4\\)"),
    (lambda: fold_whitening(W4, B3, None, np.zeros(5)), ValueError, "mean has shape \\(5,\\)"),
])
def test_bad_input_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
