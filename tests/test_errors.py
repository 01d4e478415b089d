"""Bad input fails early with a message naming the layer or file, the expected and the actual."""
import numpy as np
import pytest

import tinyconv
from tinyconv.layers import Activation, Conv2D, Dense, Input, LeakyReLU, MaxPooling2D
from tinyconv.losses import BinaryCrossentropy
from tinyconv.zoo import seed_cnn

pytestmark = pytest.mark.errors


def built_conv():
    layer = Conv2D(4, 3, name="features")
    layer.build((8, 8, 3))
    return layer


def test_wrong_channel_count_into_a_built_layer():
    with pytest.raises(ValueError, match=r"'features'.*expected input of shape \(batch, 8, 8, 3\), got \(2, 8, 8, 1\)"):
        built_conv().forward(np.zeros((2, 8, 8, 1), np.float32))


def test_wrong_rank_into_a_built_layer():
    with pytest.raises(ValueError, match=r"'features'.*got \(8, 8, 3\)"):
        built_conv().forward(np.zeros((8, 8, 3), np.float32))


def test_non_4d_batch_into_a_model():
    model = seed_cnn((8, 8, 3))
    with pytest.raises(ValueError, match=r"'input_layer'.*expected input of shape \(batch, 8, 8, 3\), got \(8, 8, 3\)"):
        model.forward(np.zeros((8, 8, 3), np.float32))


def test_integer_array_into_a_layer():
    with pytest.raises(TypeError, match=r"'features'.*floating-point.*int64"):
        built_conv().forward(np.zeros((2, 8, 8, 3), np.int64))


def test_conv_on_a_flat_input():
    with pytest.raises(ValueError, match=r"Conv2D.*expected input of shape \(batch, height, width, channels\), got \(batch, 10\)"):
        Conv2D(2, 3, name="c")(Input((10,)))


def test_dense_on_an_image_input_asks_for_flatten():
    with pytest.raises(ValueError, match="Flatten"):
        Dense(2)(Input((4, 4, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_into_the_loss(bad):
    y_pred = np.full((2, 3), 0.5)
    y_pred[1, 2] = bad
    with pytest.raises(ValueError, match="BinaryCrossentropy.*NaN or inf"):
        BinaryCrossentropy().forward(y_pred, np.zeros((2, 3)))


@pytest.mark.parametrize("label", [-0.1, 1.5, np.nan])
def test_labels_outside_unit_interval(label):
    y_true = np.zeros((2, 3))
    y_true[0, 1] = label
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        BinaryCrossentropy(from_logits=True).forward(np.zeros((2, 3)), y_true)


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        BinaryCrossentropy().forward(np.full((2, 3), 0.5), np.zeros((2, 4)))


def test_probabilities_outside_unit_interval_suggest_logits():
    with pytest.raises(ValueError, match="from_logits=True"):
        BinaryCrossentropy().forward(np.full((2, 3), 2.0), np.zeros((2, 3)))


def test_set_weights_with_wrong_shapes():
    layer = built_conv()
    with pytest.raises(ValueError, match=r"'features'.*'kernel' expected shape \(3, 3, 3, 4\), got \(3, 3, 1, 4\)"):
        layer.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])
    with pytest.raises(ValueError, match="expected 2 weight arrays, got 1"):
        layer.set_weights([np.zeros((3, 3, 3, 4))])


def test_load_weights_that_do_not_fit_names_the_layer(tmp_path):
    seed_cnn((8, 8, 3)).save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"w\.npz.*layer 1 'conv2d(_\d+)?'.*\(3, 3, 1, 64\).*\(3, 3, 3, 64\)"):
        seed_cnn((8, 8, 1)).load_weights(tmp_path / "w.npz")


def test_truncated_weights_file_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    seed_cnn((8, 8, 3)).save_weights(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"w\.npz.*truncated or corrupt"):
        seed_cnn((8, 8, 3)).load_weights(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        seed_cnn((8, 8, 3)).load_weights(tmp_path / "missing.npz")


@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3, padding="full"), lambda: MaxPooling2D(padding="SAME")])
def test_unknown_padding(make):
    with pytest.raises(ValueError, match=r"padding must be 'valid' or 'same', got"):
        make()


@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3, activation="swishy"), lambda: Activation("tanhh"),
                                  lambda: Dense(3, activation="softmaxx")])
def test_unknown_activation(make):
    with pytest.raises(ValueError, match=r"unknown activation '\w+'; expected one of"):
        make()


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="kernel_size|window size"):
        Conv2D(2, (3, 0))
    with pytest.raises(ValueError, match="filters"):
        Conv2D(0, 3)
    with pytest.raises(ValueError, match=r"LeakyReLU: alpha must be a finite number >= 0, got -1"):
        LeakyReLU(alpha=-1)
    with pytest.raises(ValueError, match="Dense: kernel_initializer: unknown initializer 'ones_please'"):
        Dense(2, kernel_initializer="ones_please")  # refused where it is given, not at build
    with pytest.raises(ValueError, match="floatx"):
        tinyconv.set_floatx("float16")
