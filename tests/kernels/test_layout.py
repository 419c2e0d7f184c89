"""The flat parameter layout: views that tile the vector, and bad sizes or activations refused."""

import numpy as np
import pytest

import naive_dense as naive
from kernels.activations import ACTIVATION_CODES
from kernels.layout import bias_view, make_layout, weight_mask, weight_view


def test_layout_views_cover_the_vector_once():
    layout, n_params = make_layout((3, 4, 2), ("maxout", "softmax"))
    # maxout doubles the rows: (8 x 3) + 8, then (2 x 4) + 2
    assert n_params == 24 + 8 + 8 + 2
    params = np.arange(n_params, dtype=np.float64)
    seen = np.concatenate([np.r_[weight_view(params, layout, k).ravel(), bias_view(params, layout, k)]
                           for k in range(2)])
    np.testing.assert_array_equal(np.sort(seen), params)
    assert weight_view(params, layout, 0).shape == (8, 3)
    assert weight_view(params, layout, 1).shape == (2, 4)
    np.testing.assert_array_equal(weight_mask(layout, n_params), naive.weight_entries(layout, n_params))


def test_layout_errors():
    with pytest.raises(ValueError, match="softmax is only allowed on the output layer"):
        make_layout((3, 4, 2), ("softmax", "linear"))
    with pytest.raises(ValueError, match="activations has 1 entries but sizes=.* defines 2 layers"):
        make_layout((3, 4, 2), ("tanh",))
    with pytest.raises(ValueError, match="at least 2 positive layer sizes"):
        make_layout((3, 0, 2), ("tanh", "linear"))


def test_unknown_activation_and_maxout_output_are_refused():
    with pytest.raises(ValueError, match="activation 'relu' is unknown; use one of"):
        make_layout((3, 2), ("relu",))
    with pytest.raises(ValueError, match="activation 'maxout' is for hidden layers only"):
        make_layout((2, 3, 2), ("tanh", "maxout"))


def test_layout_columns_for_a_maxout_stack():
    layout, n_params = make_layout((3, 4, 2), ("maxout", "softmax"), maxout_pieces=3)
    # (W offset, b offset, n_in, n_out, pieces, code): maxout rows = 4 * 3 = 12, W is 12 x 3
    np.testing.assert_array_equal(layout[0], [0, 36, 3, 4, 3, ACTIVATION_CODES["maxout"]])
    np.testing.assert_array_equal(layout[1], [48, 56, 4, 2, 1, ACTIVATION_CODES["softmax"]])
    assert n_params == 58 and layout.dtype == np.int64
