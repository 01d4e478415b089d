"""Float64 gradient checks for every layer, both BCE forms and the whole seed model."""
import numpy as np
import pytest

from tinyconv import gradcheck
from tinyconv.layers import (Activation, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPooling2D, ReLU,
                             Sigmoid)
from tinyconv.losses import BinaryCrossentropy
from tinyconv.zoo import seed_cnn

pytestmark = [pytest.mark.gradcheck, pytest.mark.usefixtures("float64")]
BOUND = 1e-6


def away_from_zero(rng, shape, margin=0.1):
    """Normal samples pushed away from 0, so no (Leaky)ReLU kink lies within h of an input."""
    x = rng.standard_normal(shape)
    return x + np.sign(x) * margin


def tie_free(rng, shape):
    """A permutation of well-separated values: no two pool inputs are within h of each other."""
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) * 0.01


LAYERS = {
    "conv_same_stride1": lambda: Conv2D(3, (3, 3), padding="same"),
    "conv_valid_stride2_nonsquare": lambda: Conv2D(2, (3, 2), strides=(2, 1)),
    "conv_same_stride3_asymmetric": lambda: Conv2D(2, (4, 2), strides=(3, 2), padding="same"),
    "conv_relu_no_bias": lambda: Conv2D(2, (2, 2), activation="relu", use_bias=False),
    "conv_sigmoid": lambda: Conv2D(2, (3, 3), activation="sigmoid"),
    "conv_winograd_same": lambda: Conv2D(3, (3, 3), padding="same", algorithm="winograd"),
    "conv_winograd_valid_no_bias": lambda: Conv2D(2, (3, 3), use_bias=False, algorithm="winograd"),
    "conv_winograd_2x2_same": lambda: Conv2D(3, (3, 3), padding="same", algorithm="winograd_2x2"),
    "leaky_relu": lambda: LeakyReLU(),
    "relu": lambda: ReLU(),
    "sigmoid": lambda: Sigmoid(),
    "activation_sigmoid": lambda: Activation("sigmoid"),
    "flatten": lambda: Flatten(),
    "dropout_training": lambda: Dropout(0.4),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_image_layer(name, rng, device):
    x = away_from_zero(rng, (2, 7, 6, 3))
    report = gradcheck.check_layer(LAYERS[name](), x, training=True)
    assert report.max_rel_error < BOUND and report.kinks == 0, str(report)


@pytest.mark.parametrize("pool, strides, padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"),
                                                     ((2, 3), (1, 2), "valid"), ((3, 2), (1, 1), "same")])
def test_max_pooling(pool, strides, padding, rng, device):
    x = tie_free(rng, (2, 7, 6, 3))
    report = gradcheck.check_layer(MaxPooling2D(pool, strides=strides, padding=padding), x)
    assert report.max_rel_error < BOUND and report.kinks == 0, str(report)


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_dense(activation, rng, device):
    report = gradcheck.check_layer(Dense(5, activation=activation), away_from_zero(rng, (4, 7)))
    assert report.max_rel_error < BOUND, str(report)


@pytest.mark.loss
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy(from_logits, rng):
    y_true = (rng.random((5, 18)) > 0.5).astype(np.float64)
    y_pred = rng.standard_normal((5, 18)) * 3 if from_logits else rng.uniform(0.02, 0.98, (5, 18))
    report = gradcheck.check_loss(BinaryCrossentropy(from_logits=from_logits), y_pred, y_true)
    assert report.max_rel_error < BOUND, str(report)


@pytest.mark.model
def test_whole_seed_model(rng, device):
    model = seed_cnn(input_shape=(8, 8, 3))
    x = rng.standard_normal((2, 8, 8, 3))
    report = gradcheck.check_model(model, x, training=True, max_checks=25)
    assert len(report.checks) == 1 + 12  # the input and every kernel and bias
    assert report.max_rel_error < BOUND, str(report)
    assert report.kinks <= 3, str(report)  # inner ReLU/pool kinks within h: rare, and left out


@pytest.mark.model
def test_kink_is_recognised_not_blamed():
    """A LeakyReLU input exactly at 0: the central difference averages the slopes 1 and alpha."""
    x = np.array([[0.0, 0.5, -0.5]])
    report = gradcheck.check_layer(LeakyReLU(), x)
    assert report.kinks == 1
    assert report.max_rel_error < BOUND, str(report)


@pytest.mark.model
def test_fused_sigmoid_bce_training_gradient(rng):
    """The fused path (logits loss, sigmoid skipped) gives the gradient of the unfused BCE."""
    model = seed_cnn(input_shape=(8, 8, 3), dropout=0.0)
    model.compile("adam", BinaryCrossentropy())
    assert model.fuse_output
    x = rng.standard_normal((3, 8, 8, 3))
    y = (rng.random((3, 18)) > 0.5).astype(np.float64)
    loss = BinaryCrossentropy()
    model.logits_loss.forward(model.forward_logits(x), y)
    model.backward_logits(model.logits_loss.backward())
    fused = [g.copy() for g in model.gradients()]
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    for a, b in zip(fused, model.gradients()):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)


def test_gradcheck_catches_a_wrong_gradient(rng):
    """The tool must be able to fail: a layer with a deliberately wrong backward is caught."""
    class WrongLeakyReLU(LeakyReLU):
        def backward(self, dy):
            return super().backward(dy) * 1.001

    report = gradcheck.check_layer(WrongLeakyReLU(), away_from_zero(rng, (2, 4, 4, 2)))
    assert report.max_rel_error > 1e-4
    assert "input" in str(report)


def test_gradcheck_refuses_float32(rng):
    import tinyconv
    tinyconv.set_floatx("float32")
    with pytest.raises(TypeError, match="float64"):
        gradcheck.check_layer(Dense(2), rng.standard_normal((2, 3)))


def test_gradcheck_names_a_backward_that_modifies_its_input(rng):
    class InPlaceLeakyReLU(LeakyReLU):
        def backward(self, dy):
            dy *= 1.0 + (self.y <= 0) * (self.alpha - 1.0)
            return dy

    with pytest.raises(ValueError, match="modified the upstream gradient"):
        gradcheck.check_layer(InPlaceLeakyReLU(), away_from_zero(rng, (2, 4, 4, 2)))
