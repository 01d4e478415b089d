"""Keras's defaults, pinned: a Keras reader who leaves an argument out gets what Keras gives.

Every other test passes most arguments explicitly, so a changed default (BatchNormalization's
epsilon set to PyTorch's 1e-5, say) passed them all. The values below are Keras 3's documented
defaults, written down here, not read from tinyconv. Behaviour is checked too, for the defaults
whose value hides inside the layer (LeakyReLU's slope, BatchNormalization's epsilon and momentum,
Adam's constants), against formulas written out in this file.
"""
import inspect

import numpy as np
import pytest

import tinyconv
from tinyconv import callbacks, layers, losses, optimizers
from tinyconv.data import ImageDataGenerator
from tinyconv.model import Model

pytestmark = [pytest.mark.model, pytest.mark.conv, pytest.mark.pool, pytest.mark.activations, pytest.mark.dense,
              pytest.mark.dropout, pytest.mark.norm, pytest.mark.loss, pytest.mark.optim, pytest.mark.training,
              pytest.mark.augment, pytest.mark.generative, pytest.mark.graph]

CONV = {"strides": (1, 1), "padding": "valid", "activation": None, "use_bias": True,
        "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
KERAS_DEFAULTS = {
    layers.Conv2D: CONV,
    layers.Conv2DTranspose: CONV,
    layers.Dense: {"activation": None, "use_bias": True, "kernel_initializer": "glorot_uniform",
                   "bias_initializer": "zeros"},
    layers.MaxPooling2D: {"pool_size": (2, 2), "strides": None, "padding": "valid"},
    layers.BatchNormalization: {"axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True,
                                "beta_initializer": "zeros", "gamma_initializer": "ones",
                                "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones"},
    layers.Softmax: {"axis": -1},
    layers.Concatenate: {"axis": -1},
    layers.UpSampling2D: {"size": (2, 2), "interpolation": "nearest"},
    layers.Dropout: {"seed": None},
    losses.BinaryCrossentropy: {"from_logits": False},
    losses.CategoricalCrossentropy: {"from_logits": False},
    optimizers.Adam: {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    optimizers.SGD: {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    callbacks.EarlyStopping: {"monitor": "val_loss", "min_delta": 0, "patience": 0, "verbose": 0, "mode": "auto",
                              "restore_best_weights": False},
    callbacks.CSVLogger: {"separator": ",", "append": False},
    callbacks.ModelCheckpoint: {"monitor": "val_loss", "verbose": 0, "save_best_only": False, "mode": "auto"},
    ImageDataGenerator: {"featurewise_center": False, "samplewise_center": False,
                         "featurewise_std_normalization": False, "samplewise_std_normalization": False,
                         "rotation_range": 0, "width_shift_range": 0.0, "height_shift_range": 0.0,
                         "shear_range": 0.0, "zoom_range": 0.0, "fill_mode": "nearest", "cval": 0.0,
                         "horizontal_flip": False, "vertical_flip": False, "rescale": None},
    ImageDataGenerator.flow: {"batch_size": 32, "shuffle": True, "seed": None},
    # Keras 3's batch_size=None means 32; tinyconv writes the 32.
    Model.fit: {"batch_size": 32, "epochs": 1, "shuffle": True, "initial_epoch": 0, "validation_data": None,
                "callbacks": None, "steps_per_epoch": None},
}


@pytest.mark.parametrize("owner", KERAS_DEFAULTS, ids=lambda owner: owner.__qualname__)
def test_defaults_are_keras_defaults(owner):
    parameters = inspect.signature(owner).parameters
    for name, keras_default in KERAS_DEFAULTS[owner].items():
        assert name in parameters, f"{owner.__qualname__} has no argument {name!r}"
        assert parameters[name].default == keras_default, (owner.__qualname__, name, parameters[name].default)


def test_leaky_relu_default_slope_is_keras_0_3():
    x = np.array([[-2.0, -0.5, 0.0, 1.5]], dtype=np.float32)
    np.testing.assert_allclose(layers.LeakyReLU().forward(x), np.where(x > 0, x, 0.3 * x), rtol=1e-7)


def test_batch_normalization_defaults_behave_as_epsilon_1e_3_and_momentum_0_99(rng):
    """A small variance makes epsilon visible: 1e-3 against PyTorch's 1e-5 moves y by about 20%."""
    x = (0.05 * rng.standard_normal((16, 3))).astype(np.float64)
    tinyconv.set_floatx("float64")
    try:
        layer = layers.BatchNormalization()
        layer.build((3,))
        y = layer.forward(x, training=True)
    finally:
        tinyconv.set_floatx("float32")
    mean, variance = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + 1e-3), rtol=1e-10)
    moving_mean, moving_variance = layer.get_weights()[2:]
    np.testing.assert_allclose(moving_mean, 0.01 * mean, rtol=1e-10)
    np.testing.assert_allclose(moving_variance, 0.99 + 0.01 * variance, rtol=1e-10)


def test_adam_and_sgd_defaults_take_keras_first_step():
    g = np.array([0.3, -2.0, 1e-4])
    w, expected = np.ones(3), np.ones(3)
    optimizers.Adam().step([w], [g])
    m, v = 0.1 * g, 0.001 * g * g
    expected -= 0.001 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(w, expected, rtol=1e-9)
    w = np.ones(3)
    optimizers.SGD().step([w], [g])
    np.testing.assert_allclose(w, 1 - 0.01 * g, rtol=1e-12)


def test_max_pooling_strides_default_to_the_pool_size():
    x = np.arange(2 * 6 * 6 * 1, dtype=np.float32).reshape(2, 6, 6, 1)
    layer = layers.MaxPooling2D((3, 3))
    y = layer.forward(x)
    assert y.shape == (2, 2, 2, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[14, 17], [32, 35]])


def test_early_stopping_default_patience_stops_at_the_first_epoch_without_improvement():
    stopper = callbacks.EarlyStopping(monitor="loss")

    class Trained:
        stop_training = False

    model = Trained()
    stopper.set_model(model)
    stopper.set_params({"initial_epoch": 0})
    stopper.on_train_begin()
    for epoch, loss in enumerate([1.0, 0.9, 0.95]):
        stopper.on_epoch_end(epoch, {"loss": loss})
        if model.stop_training:
            break
    assert model.stop_training and epoch == 2
