"""Layer behaviour beyond gradients: Keras defaults, dropout semantics, activations' values."""
import numpy as np
import pytest
from scipy.special import expit

import tinyconv
from tinyconv.layers import Activation, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPooling2D, ReLU


@pytest.mark.activations
def test_leaky_relu_defaults_and_aliases():
    assert LeakyReLU().alpha == 0.3  # Keras's default, not 0.01
    assert LeakyReLU(alpha=0.1).alpha == 0.1
    assert LeakyReLU(negative_slope=0.2).alpha == 0.2
    x = np.array([[-2.0, -0.5, 0.0, 1.5]], dtype=np.float32)
    np.testing.assert_allclose(LeakyReLU().forward(x), [[-0.6, -0.15, 0.0, 1.5]], rtol=1e-6)
    np.testing.assert_array_equal(ReLU().forward(x), [[0, 0, 0, 1.5]])


@pytest.mark.activations
def test_sigmoid_is_exact_and_never_overflows():
    x = np.array([[-1000.0, -20.0, 0.0, 3.0, 1000.0]])
    with np.errstate(over="raise"):
        y = Activation("sigmoid").forward(x)
    np.testing.assert_allclose(y, expit(x), rtol=1e-12)


@pytest.mark.dropout
def test_dropout_is_inverted_seeded_and_identity_in_inference():
    x = np.ones((200, 50), dtype=np.float32)
    layer = Dropout(0.5)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    y = layer.forward(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}  # kept units scaled by 1 / (1 - rate)
    assert abs((y == 0).mean() - 0.5) < 0.02
    dy = np.arange(x.size, dtype=np.float32).reshape(x.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy * y)  # the same mask on the way back
    tinyconv.set_seed(0)
    np.testing.assert_array_equal(Dropout(0.5).forward(x, training=True), y)  # the seed fixes the mask
    a, b = Dropout(0.3, seed=7), Dropout(0.3, seed=7)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))


@pytest.mark.dense
def test_flatten_is_row_major_channels_last():
    x = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    y = Flatten().forward(x)
    assert y.shape == (2, 24)
    assert y[1, 5] == x[1, 0, 1, 1]  # (h, w, c) = (0, 1, 1) -> 1*4 + 1 = 5


@pytest.mark.dense
def test_dense_computes_affine_map(rng):
    layer = Dense(3)
    layer.build((4,))
    w, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    layer.set_weights([w, b])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x @ w + b, rtol=1e-5)


@pytest.mark.conv
def test_glorot_uniform_limits_follow_keras_fans():
    layer = Conv2D(8, (3, 3))
    layer.build((10, 10, 4))
    limit = np.sqrt(6 / (3 * 3 * 4 + 3 * 3 * 8))
    kernel = layer.params["kernel"]
    assert kernel.dtype == np.float32
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert np.all(layer.params["bias"] == 0)


@pytest.mark.conv
def test_he_normal_std(rng):
    layer = Dense(400, kernel_initializer="he_normal")
    layer.build((300,))
    kernel = layer.params["kernel"]
    assert kernel.std() == pytest.approx(np.sqrt(2 / 300), rel=0.03)
    assert np.abs(kernel).max() <= 2 * np.sqrt(2 / 300) / 0.8796 + 1e-6


@pytest.mark.pool
def test_max_pooling_values():
    x = np.array([[1, 5, 2, 0], [3, 4, 8, 1], [-1, -2, -7, -3], [-4, -5, -6, -9]], dtype=np.float32)
    y = MaxPooling2D((2, 2)).forward(x[None, :, :, None])
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 8], [-1, -3]])


@pytest.mark.pool
def test_same_pooling_of_negatives_never_returns_padding():
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    y = MaxPooling2D((2, 2), padding="same").forward(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -3], [-7, -9]])


@pytest.mark.activations
@pytest.mark.pool
@pytest.mark.conv
@pytest.mark.dropout
def test_backward_does_not_modify_upstream_gradient(rng):
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    for layer in [LeakyReLU(), MaxPooling2D(), Conv2D(2, 3, activation="relu"), Dropout(0.5)]:
        y = layer.forward(x, training=True)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        before = dy.copy()
        layer.backward(dy)
        np.testing.assert_array_equal(dy, before, err_msg=layer.name)
