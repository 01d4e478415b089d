"""Bad input fails early with a message naming the layer or file, the expected and the actual."""
import re

import numpy as np
import pytest

import tinyconv
from tinyconv.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, ProgressBar, TrainingCheckpoint
from tinyconv.data import ImageDataGenerator
from tinyconv.layers import (Activation, Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D, ReLU,
                             Sigmoid, reset_names)
from tinyconv.losses import BinaryCrossentropy
from tinyconv.optimizers import SGD, Adam
from tinyconv.zoo import seed_cnn
from tinyconv.storage import weights as weights_file

pytestmark = pytest.mark.errors


def built_conv():
    layer = Conv2D(4, 3, name="features")
    layer.build((8, 8, 3))
    return layer


@pytest.mark.model
def test_wrong_channel_count_into_a_built_layer():
    with pytest.raises(ValueError, match=r"'features'.*expected input of shape \(batch, 8, 8, 3\), got \(2, 8, 8, 1\)"):
        built_conv().forward(np.zeros((2, 8, 8, 1), np.float32))


@pytest.mark.model
def test_wrong_rank_into_a_built_layer():
    with pytest.raises(ValueError, match=r"'features'.*got \(8, 8, 3\)"):
        built_conv().forward(np.zeros((8, 8, 3), np.float32))


@pytest.mark.model
def test_non_4d_batch_into_a_model():
    model = seed_cnn((8, 8, 3))
    with pytest.raises(ValueError, match=r"'input_layer'.*expected input of shape \(batch, 8, 8, 3\), got \(8, 8, 3\)"):
        model.forward(np.zeros((8, 8, 3), np.float32))


@pytest.mark.model
def test_integer_array_into_a_layer():
    with pytest.raises(TypeError, match=r"'features'.*floating-point.*int64"):
        built_conv().forward(np.zeros((2, 8, 8, 3), np.int64))


@pytest.mark.conv
def test_conv_on_a_flat_input():
    with pytest.raises(ValueError, match=r"Conv2D.*expected input of shape \(batch, height, width, channels\), got \(batch, 10\)"):
        Conv2D(2, 3, name="c")(Input((10,)))


@pytest.mark.dense
def test_dense_on_an_image_input_asks_for_flatten():
    with pytest.raises(ValueError, match="Flatten"):
        Dense(2)(Input((4, 4, 3)))


@pytest.mark.loss
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_into_the_loss(bad):
    y_pred = np.full((2, 3), 0.5)
    y_pred[1, 2] = bad
    with pytest.raises(ValueError, match="BinaryCrossentropy.*NaN or inf"):
        BinaryCrossentropy().forward(y_pred, np.zeros((2, 3)))


@pytest.mark.loss
@pytest.mark.parametrize("label", [-0.1, 1.5, np.nan])
def test_labels_outside_unit_interval(label):
    y_true = np.zeros((2, 3))
    y_true[0, 1] = label
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        BinaryCrossentropy(from_logits=True).forward(np.zeros((2, 3)), y_true)


@pytest.mark.loss
def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        BinaryCrossentropy().forward(np.full((2, 3), 0.5), np.zeros((2, 4)))


@pytest.mark.loss
def test_probabilities_outside_unit_interval_suggest_logits():
    with pytest.raises(ValueError, match="from_logits=True"):
        BinaryCrossentropy().forward(np.full((2, 3), 2.0), np.zeros((2, 3)))


@pytest.mark.model
def test_set_weights_with_wrong_shapes():
    layer = built_conv()
    with pytest.raises(ValueError, match=r"'features'.*'kernel' expected shape \(3, 3, 3, 4\), got \(3, 3, 1, 4\)"):
        layer.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])
    with pytest.raises(ValueError, match="expected 2 weight arrays, got 1"):
        layer.set_weights([np.zeros((3, 3, 3, 4))])


@pytest.mark.model
@pytest.mark.training
def test_load_weights_that_do_not_fit_names_the_layer(tmp_path):
    seed_cnn((8, 8, 3)).save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"w\.npz.*layer 1 'conv2d(_\d+)?'.*\(3, 3, 1, 64\).*\(3, 3, 3, 64\)"):
        seed_cnn((8, 8, 1)).load_weights(tmp_path / "w.npz")


@pytest.mark.model
def test_truncated_weights_file_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    seed_cnn((8, 8, 3)).save_weights(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"w\.npz.*truncated or corrupt"):
        seed_cnn((8, 8, 3)).load_weights(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        seed_cnn((8, 8, 3)).load_weights(tmp_path / "missing.npz")


@pytest.mark.conv
@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3, padding="full"), lambda: MaxPooling2D(padding="SAME")])
def test_unknown_padding(make):
    with pytest.raises(ValueError, match=r"padding must be 'valid' or 'same', got"):
        make()


@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3, activation="swishy"), lambda: Activation("tanhh"),
                                  lambda: Dense(3, activation="softmaxx")])
@pytest.mark.activations
def test_unknown_activation(make):
    with pytest.raises(ValueError, match=r"unknown activation '\w+'; expected one of"):
        make()


@pytest.mark.model
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


# --- hyper-parameters are refused where they are given ------------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("make, error, message", [
    (lambda: Adam(learning_rate=NAN), ValueError, r"Adam: learning_rate must be a finite number > 0, got nan"),
    (lambda: SGD(learning_rate=INF), ValueError, r"SGD: learning_rate must be a finite number > 0, got inf"),
    (lambda: Adam(learning_rate=0), ValueError, r"Adam: learning_rate must be a finite number > 0, got 0"),
    (lambda: Adam(lr=-1e-3), ValueError, r"Adam: lr must be a finite number > 0, got -0\.001"),
    (lambda: Adam(learning_rate="0.001"), TypeError, r"Adam: learning_rate must be a finite number > 0, got '0\.001'"),
    (lambda: SGD(learning_rate=True), TypeError, r"SGD: learning_rate .* got True \(bool\)"),
    (lambda: Adam(beta_1=1.5), ValueError, r"Adam: beta_1 must be a finite number in \[0, 1\), got 1\.5"),
    (lambda: Adam(beta_1=1.0), ValueError, r"Adam: beta_1 must be a finite number in \[0, 1\), got 1\.0"),
    (lambda: Adam(beta_2=-1), ValueError, r"Adam: beta_2 must be a finite number in \[0, 1\), got -1"),
    (lambda: Adam(epsilon=0), ValueError, r"Adam: epsilon must be a finite number > 0, got 0"),
    (lambda: Adam(epsilon=NAN), ValueError, r"Adam: epsilon .* got nan"),
    (lambda: SGD(momentum=1), ValueError, r"SGD: momentum must be a finite number in \[0, 1\), got 1"),
    (lambda: SGD(momentum=None), TypeError, r"SGD: momentum .* got None \(NoneType\)"),
    (lambda: SGD(nesterov="yes"), TypeError, r"SGD: nesterov must be True or False, got 'yes'"),
    (lambda: BinaryCrossentropy(from_logits="False"), TypeError, r"BinaryCrossentropy: from_logits must be True or False"),
])
@pytest.mark.loss
@pytest.mark.optim
def test_optimizer_and_loss_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"rotation_range": -10}, ValueError, r"rotation_range must be a finite number in \[0, 360\], got -10"),
    ({"rotation_range": NAN}, ValueError, r"rotation_range .* got nan"),
    ({"rotation_range": "10"}, TypeError, r"rotation_range .* got '10'"),
    ({"shear_range": INF}, ValueError, r"shear_range .* got inf"),
    ({"width_shift_range": -0.1}, ValueError, r"width_shift_range must be a finite number in \[0, 1e\+06\], got -0\.1"),
    ({"height_shift_range": NAN}, ValueError, r"height_shift_range .* got nan"),
    ({"height_shift_range": -2}, ValueError, r"height_shift_range must be an integer in \[0, 1000000\], got -2"),
    ({"width_shift_range": "0.1"}, TypeError, r"width_shift_range .* got '0\.1'"),
    ({"width_shift_range": True}, TypeError, r"width_shift_range .* got True \(bool\)"),
    ({"width_shift_range": []}, ValueError, r"width_shift_range as a sequence must be a flat, non-empty list"),
    ({"width_shift_range": [[0.1, 0.2]]}, ValueError, r"width_shift_range as a sequence must be a flat, non-empty list"),
    ({"width_shift_range": [0.1, INF]}, ValueError, r"each value of width_shift_range .* got inf"),
    ({"zoom_range": -0.2}, ValueError, r"zoom_range must be a finite number in \[0, 1\), got -0\.2"),
    ({"zoom_range": 1.0}, ValueError, r"zoom_range must be a finite number in \[0, 1\), got 1\.0"),
    ({"zoom_range": [0.0, 1.2]}, ValueError, r"zoom_range\[0\] must be a finite number in \(0, 1000\], got 0\.0"),
    ({"zoom_range": [1.2, 0.8]}, ValueError, r"zoom_range \[lo, hi\] must have lo <= hi, got \[1\.2, 0\.8\]"),
    ({"zoom_range": [0.9, NAN]}, ValueError, r"zoom_range\[1\] .* got nan"),
    ({"zoom_range": [0.9, 1.0, 1.1]}, ValueError, r"zoom_range must be a number or a pair \[lo, hi\]"),
    ({"zoom_range": "0.1"}, TypeError, r"zoom_range .* got '0\.1'"),
    ({"cval": NAN}, ValueError, r"cval must be a finite number, got nan"),
    ({"rescale": "1/255"}, TypeError, r"rescale must be a finite number, got '1/255'"),
    ({"rescale": INF}, ValueError, r"rescale .* got inf"),
    ({"fill_mode": "mirror"}, ValueError, r"fill_mode must be one of 'nearest', 'constant', 'reflect' or 'wrap', got 'mirror'"),
    ({"horizontal_flip": "True"}, TypeError, r"horizontal_flip must be True or False, got 'True'"),
    ({"featurewise_center": 1}, TypeError, r"featurewise_center must be True or False, got 1"),
])
@pytest.mark.augment
def test_image_data_generator_arguments(kwargs, error, message):
    with pytest.raises(error, match=r"^ImageDataGenerator: " + message):
        ImageDataGenerator(**kwargs)


@pytest.mark.augment
def test_image_data_generator_call_arguments():
    gen = ImageDataGenerator(featurewise_center=True)
    x = np.zeros((4, 3, 3, 1), np.float32)
    with pytest.raises(TypeError, match=r"ImageDataGenerator\.flow: batch_size must be an integer >= 1, got 2\.0"):
        gen.flow(x, batch_size=2.0)
    with pytest.raises(TypeError, match=r"ImageDataGenerator\.flow: shuffle must be True or False, got 'no'"):
        gen.flow(x, shuffle="no")
    with pytest.raises(ValueError, match=r"ImageDataGenerator\.flow: seed must be an integer >= 0, got -1"):
        gen.flow(x, seed=-1)
    with pytest.raises(ValueError, match=r"ImageDataGenerator\.fit: rounds must be an integer >= 1, got 0"):
        gen.fit(x, augment=True, rounds=0)
    assert gen.mean is None  # nothing was fitted by the refused call


@pytest.mark.parametrize("make, error, message", [
    (lambda: Conv2D("8", 3), TypeError, r"Conv2D: filters must be an integer >= 1, got '8'"),
    (lambda: Conv2D(True, 3), TypeError, r"Conv2D: filters must be an integer >= 1, got True \(bool\)"),
    (lambda: Conv2D(8.0, 3), TypeError, r"Conv2D: filters must be an integer >= 1, got 8\.0"),
    (lambda: Conv2D(8, 3.0), TypeError, r"Conv2D: kernel_size must be a positive integer or a pair of them, got 3\.0"),
    (lambda: Conv2D(8, (3, 3, 3)), ValueError, r"Conv2D: kernel_size must be .* got \(3, 3, 3\)"),
    (lambda: Conv2D(8, 3, strides=0), ValueError, r"Conv2D: strides must be a positive integer or a pair of them, got \(0, 0\)"),
    (lambda: Conv2D(8, 3, strides=2, algorithm="winograd_2x2"), ValueError,
     r"Conv2D: the Winograd algorithm needs a 3x3 kernel with strides 1, got kernel \(3, 3\) and strides \(2, 2\)"),
    (lambda: Conv2D(8, 3, use_bias="no"), TypeError, r"Conv2D: use_bias must be True or False, got 'no'"),
    (lambda: Conv2D(8, 3, bias_initializer=0), TypeError, r"Conv2D: bias_initializer: expected an initializer name"),
    (lambda: Conv2D(8, 3, name=""), ValueError, r"Conv2D: name must be a non-empty string"),
    (lambda: Conv2D(8, 3, name="c", input_shape=(8, -8, 3)), ValueError,
     r"Conv2D 'c': input_shape must be a tuple of positive integers like \(32, 32, 3\), got \(8, -8, 3\)"),
    (lambda: MaxPooling2D(pool_size=0), ValueError, r"MaxPooling2D: pool_size must be a positive integer"),
    (lambda: MaxPooling2D(strides=(2, 2.5)), TypeError, r"MaxPooling2D: strides must be .* got \(2, 2\.5\)"),
    (lambda: Dense(0), ValueError, r"Dense: units must be an integer >= 1, got 0"),
    (lambda: Dense(np.float64(3)), TypeError, r"Dense: units must be an integer >= 1, got 3\.0 \(float64\)"),
    (lambda: Dense(3, activation=["relu"]), TypeError, r"Dense: activation must be a name such as 'relu'"),
    (lambda: Dropout(1.0), ValueError, r"Dropout: rate must be a finite number in \[0, 1\), got 1\.0"),
    (lambda: Dropout(NAN), ValueError, r"Dropout: rate .* got nan"),
    (lambda: Dropout("0.5"), TypeError, r"Dropout: rate .* got '0\.5'"),
    (lambda: Dropout(0.5, seed=1.5), TypeError, r"Dropout: seed must be an integer >= 0, got 1\.5"),
    (lambda: LeakyReLU(alpha=NAN), ValueError, r"LeakyReLU: alpha must be a finite number >= 0, got nan"),
    (lambda: LeakyReLU(negative_slope="0.1"), TypeError, r"LeakyReLU: negative_slope .* got '0\.1'"),
    (lambda: LeakyReLU(alpha=0.1, negative_slope=0.2), ValueError, r"LeakyReLU: give alpha or negative_slope, not both"),
    (lambda: Activation(None, name=3), TypeError, r"Activation: name must be a string, got 3"),
    (lambda: Flatten(input_shape="8x8"), TypeError, r"Flatten: input_shape must be a tuple of positive integers"),
    (lambda: Input((32, 32.0, 3)), TypeError, r"shape must be a tuple of positive integers like \(32, 32, 3\), got \(32, 32\.0, 3\)"),
    (lambda: Input((32, True, 3)), TypeError, r"shape must be a tuple of positive integers"),
    (lambda: Input(()), ValueError, r"shape must be a tuple of positive integers"),
])
@pytest.mark.model
def test_layer_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.model
def test_a_refused_layer_takes_no_name():
    with pytest.raises(ValueError):
        Conv2D(0, 3)
    assert Conv2D(2, 3).name == "conv2d"  # not conv2d_1: the refused layer changed nothing


@pytest.mark.parametrize("make, error, message", [
    (lambda: EarlyStopping(patience=-1), ValueError, r"EarlyStopping: patience must be an integer >= 0, got -1"),
    (lambda: EarlyStopping(patience=2.5), TypeError, r"EarlyStopping: patience must be an integer >= 0, got 2\.5"),
    (lambda: EarlyStopping(min_delta=NAN), ValueError, r"EarlyStopping: min_delta must be a finite number, got nan"),
    (lambda: EarlyStopping(monitor=None), TypeError, r"EarlyStopping: monitor must be a string, got None"),
    (lambda: EarlyStopping(mode="maximum"), ValueError, r"EarlyStopping: mode must be one of 'auto', 'min' or 'max', got 'maximum'"),
    (lambda: EarlyStopping(restore_best_weights="yes"), TypeError, r"EarlyStopping: restore_best_weights must be True or False"),
    (lambda: CSVLogger(None), TypeError, r"CSVLogger: filename must be a path \(str or pathlib\.Path\), got None"),
    (lambda: CSVLogger(""), ValueError, r"CSVLogger: filename must be a non-empty path"),
    (lambda: CSVLogger("log.csv", separator=";;"), ValueError, r"CSVLogger: separator must be one character"),
    (lambda: CSVLogger("log.csv", separator='"'), ValueError, r"CSVLogger: separator must be one character other than a quote"),
    (lambda: CSVLogger("log.csv", append="yes"), TypeError, r"CSVLogger: append must be True or False"),
    (lambda: ModelCheckpoint(3), TypeError, r"ModelCheckpoint: filepath must be a path"),
    (lambda: ModelCheckpoint("w-{epoch.npz"), ValueError, r"ModelCheckpoint: filepath 'w-\{epoch\.npz' is not a valid format string"),
    (lambda: ModelCheckpoint("w.npz", save_best_only=1), TypeError, r"ModelCheckpoint: save_best_only must be True or False, got 1"),
    (lambda: ModelCheckpoint("w.npz", verbose=-1), ValueError, r"ModelCheckpoint: verbose must be an integer >= 0, got -1"),
    (lambda: ModelCheckpoint("w.npz", mode="best"), ValueError, r"ModelCheckpoint: mode must be one of"),
    (lambda: TrainingCheckpoint(b"c.npz"), TypeError, r"TrainingCheckpoint: filepath must be a path"),
    (lambda: ProgressBar(verbose=3), ValueError, r"ProgressBar: verbose must be an integer in \[0, 2\], got 3"),
])
@pytest.mark.training
def test_callback_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.backend
def test_set_seed_refuses_bools_and_floats():
    with pytest.raises(TypeError, match=r"set_seed: seed must be an integer >= 0, got True \(bool\)"):
        tinyconv.set_seed(True)
    with pytest.raises(TypeError, match=r"set_seed: seed must be an integer >= 0, got 1\.0"):
        tinyconv.set_seed(1.0)


# --- NumPy integers count as integers everywhere ---------------------------------------------------

@pytest.mark.model
def test_numpy_integers_are_accepted_wherever_an_int_is(rng):
    i64, i32, u8 = np.int64, np.int32, np.uint8
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)

    def run(make_layers):
        tinyconv.set_seed(0)
        inputs = Input((i64(8), i32(8), u8(3)))
        y = inputs
        for layer in make_layers():
            y = layer(y)
        from tinyconv import Model
        return Model(inputs, y).forward(x)

    with_numpy = run(lambda: [Conv2D(i64(4), i32(3), strides=(i64(1), u8(1)), padding="same"),
                              MaxPooling2D(i64(2), strides=i32(2)), Flatten(), Dense(i64(5)),
                              Dropout(np.float32(0.5), seed=i64(3))])
    reset_names()
    with_python = run(lambda: [Conv2D(4, 3, strides=(1, 1), padding="same"), MaxPooling2D(2, strides=2),
                               Flatten(), Dense(5), Dropout(0.5, seed=3)])
    np.testing.assert_array_equal(with_numpy, with_python)
    assert type(Conv2D(i64(4), 3).filters) is int and type(Dense(i64(5)).units) is int
    assert EarlyStopping(patience=i64(3)).patience == 3
    assert Adam(learning_rate=np.float32(0.5), beta_1=np.float64(0.5)).beta_1 == 0.5
    gen = ImageDataGenerator(width_shift_range=i64(2), rotation_range=i32(5), zoom_range=np.float32(0.5))
    assert {gen.get_random_transform((9, 9, 1), seed=s)["ty"] for s in range(50)} <= {-1.0, 0.0, 1.0}
    assert len(gen.flow(x, batch_size=i64(2), seed=i64(1))) == 1
    tinyconv.set_seed(i64(3))
    # NumPy's booleans are booleans (a comparison of arrays gives one)
    assert ImageDataGenerator(horizontal_flip=np.True_).horizontal_flip is True
    assert Conv2D(2, 3, use_bias=np.False_).use_bias is False
    # and a 1-D integer array is a pair, as a tuple is
    assert MaxPooling2D(np.array([2, 3]), strides=np.array([1, 2], np.int32)).pool_size == (2, 3)


# --- call order and gradient shapes ---------------------------------------------------------------

def layers_to_check():
    return [("conv", lambda: Conv2D(2, 3), (1, 5, 5, 2), (1, 3, 3, 2)),
            ("conv_sigmoid", lambda: Conv2D(2, 3, activation="sigmoid"), (1, 5, 5, 2), (1, 3, 3, 2)),
            ("dense", lambda: Dense(3), (2, 4), (2, 3)),
            ("pool", lambda: MaxPooling2D(2), (1, 4, 4, 2), (1, 2, 2, 2)),
            ("leaky", lambda: LeakyReLU(), (2, 4), (2, 4)),
            ("relu", lambda: ReLU(), (2, 4), (2, 4)),
            ("sigmoid", lambda: Sigmoid(), (2, 4), (2, 4)),
            ("activation", lambda: Activation("sigmoid"), (2, 4), (2, 4)),
            ("flatten", lambda: Flatten(), (2, 2, 2, 1), (2, 4)),
            ("dropout", lambda: Dropout(0.5), (2, 4), (2, 4))]


@pytest.mark.model
@pytest.mark.parametrize("kind, make, x_shape, y_shape", layers_to_check())
def test_backward_before_forward_names_the_layer(kind, make, x_shape, y_shape):
    layer = make()
    layer.build(x_shape[1:])
    message = (rf"layer '{layer.name}' \({type(layer).__name__}\): backward was called before forward \(or "
               r"again after one backward\); call forward\(x\) first")
    with pytest.raises(RuntimeError, match=message):
        layer.backward(np.ones(y_shape, np.float32))
    layer.forward(np.ones(x_shape, np.float32), training=True)
    layer.backward(np.ones(y_shape, np.float32))
    assert layer.cache is None  # let go by backward
    with pytest.raises(RuntimeError, match=message):  # one forward serves one backward
        layer.backward(np.ones(y_shape, np.float32))


@pytest.mark.model
@pytest.mark.parametrize("kind, make, x_shape, y_shape", layers_to_check())
def test_gradient_of_the_wrong_shape_names_the_expected_shape(kind, make, x_shape, y_shape, rng):
    layer = make()
    layer.forward(rng.standard_normal(x_shape).astype(np.float32), training=True)
    wrong = (y_shape[0] + 1, *y_shape[1:])
    expected = re.escape(str(tuple(y_shape)))
    with pytest.raises(ValueError, match=rf"layer '{layer.name}' .*expected an upstream gradient of shape "
                                         rf"{expected} .*got {re.escape(str(wrong))}"):
        layer.backward(np.ones(wrong, np.float32))
    with pytest.raises(ValueError, match=rf"layer '{layer.name}' .*got list"):
        layer.backward(np.ones(y_shape).tolist())
    assert layer.backward(np.ones(y_shape, np.float32)).shape == x_shape  # the right one still works


@pytest.mark.model
def test_model_backward_before_forward_names_the_last_layer():
    model = seed_cnn((8, 8, 3))
    with pytest.raises(RuntimeError, match=r"layer 'dense(_\d+)?' \(Dense\): backward was called before forward"):
        model.backward(np.ones((2, 18), np.float32))


@pytest.mark.loss
@pytest.mark.model
@pytest.mark.parametrize("from_logits", [False, True])
def test_loss_backward_before_forward(from_logits):
    with pytest.raises(RuntimeError, match=rf"BinaryCrossentropy\(from_logits={from_logits}\): backward was "
                                           r"called before forward; call forward\(y_pred, y_true\) first"):
        BinaryCrossentropy(from_logits=from_logits).backward()


@pytest.mark.model
def test_backward_logits_before_forward_logits_names_the_layer(rng):
    layer = Dense(3, activation="sigmoid", name="head")
    layer.build((4,))
    with pytest.raises(RuntimeError, match=r"layer 'head' \(Dense\): backward was called before forward"):
        layer.backward_logits(np.ones((2, 3), np.float32))
    layer.forward_logits(rng.standard_normal((2, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r"layer 'head' .*shape \(2, 3\) .*got \(2, 4\)"):
        layer.backward_logits(np.ones((2, 4), np.float32))
    assert layer.backward_logits(np.ones((2, 3), np.float32)).shape == (2, 4)


# --- call arguments of fit / evaluate / predict: refused before anything changes ----------------------

def _compiled_tiny_model():
    from training_fixtures import tiny_data, tiny_model
    return tiny_model(), *tiny_data(n=12)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, r"fit: batch_size must be an integer >= 1, got 0"),
    ({"batch_size": -1}, ValueError, r"fit: batch_size must be an integer >= 1, got -1"),
    ({"batch_size": 8.0}, TypeError, r"fit: batch_size must be an integer >= 1, got 8\.0"),
    ({"batch_size": True}, TypeError, r"fit: batch_size must be an integer >= 1, got True \(bool\)"),
    ({"epochs": -3}, ValueError, r"fit: epochs must be an integer >= 0, got -3"),
    ({"epochs": 2.5}, TypeError, r"fit: epochs must be an integer >= 0, got 2\.5"),
    ({"epochs": 2, "initial_epoch": 5}, ValueError, r"initial_epoch \(5\) must be below epochs \(2\)"),
    ({"epochs": 2, "initial_epoch": 2}, ValueError, r"initial_epoch \(2\) must be below epochs \(2\)"),
    ({"initial_epoch": -1}, ValueError, r"fit: initial_epoch must be an integer >= 0, got -1"),
    ({"steps_per_epoch": 0}, ValueError, r"fit: steps_per_epoch must be an integer >= 1, got 0"),
    ({"steps_per_epoch": 1.5}, TypeError, r"fit: steps_per_epoch must be an integer >= 1, got 1\.5"),
    ({"shuffle": "no"}, TypeError, r"fit: shuffle must be True or False, got 'no'"),
    ({"shuffle": 0}, TypeError, r"fit: shuffle must be True or False"),
    ({"verbose": 3}, ValueError, r"fit: verbose must be 0 \(silent\), 1 .*got 3"),
    ({"verbose": "loud"}, ValueError, r"fit: verbose must be .*got 'loud'"),
    ({"stop_on_nan": None}, TypeError, r"fit: stop_on_nan must be True or False"),
])
@pytest.mark.training
def test_bad_fit_arguments_are_refused_before_training(kwargs, error, message):
    model, x, y = _compiled_tiny_model()
    before = [w.copy() for w in model.get_weights()]
    random_state = tinyconv.random.get_state()
    with pytest.raises(error, match=message):
        model.fit(x, y, **{"verbose": 0, **kwargs})
    assert model.optimizer.iterations == 0 and tinyconv.random.get_state() == random_state
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.model
@pytest.mark.training
def test_numpy_integers_are_accepted_as_fit_arguments():
    model, x, y = _compiled_tiny_model()
    history = model.fit(x, y, batch_size=np.int64(6), epochs=np.int32(2), initial_epoch=np.int64(1),
                        steps_per_epoch=np.int64(1), shuffle=np.bool_(False), verbose=0)
    assert history.epoch == [1] and model.optimizer.iterations == 1


@pytest.mark.model
@pytest.mark.training
@pytest.mark.parametrize("method", ["evaluate", "predict"])
@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-1, ValueError), (8.0, TypeError)])
def test_bad_batch_size_in_evaluate_and_predict(method, batch_size, error):
    model, x, y = _compiled_tiny_model()
    args = (x, y) if method == "evaluate" else (x,)
    with pytest.raises(error, match=f"{method}: batch_size must be"):
        getattr(model, method)(*args, batch_size=batch_size)
    with pytest.raises(ValueError, match=f"{method}: verbose must be"):
        getattr(model, method)(*args, verbose=-1)


@pytest.mark.training
def test_fit_on_a_list_of_images_says_to_stack_them():
    model, x, y = _compiled_tiny_model()
    with pytest.raises(TypeError, match=r"fit takes images as one NumPy array .*got a list of 12 items.*np\.stack"):
        model.fit(list(x), y)


@pytest.mark.augment
@pytest.mark.loss
@pytest.mark.training
def test_fit_on_a_flow_without_labels():
    from tinyconv.data import ImageDataGenerator
    model, x, y = _compiled_tiny_model()
    with pytest.raises(ValueError, match=r"fit got an iterator without labels \(NumpyArrayIterator with y=None\).*flow\(x, y\)"):
        model.fit(ImageDataGenerator().flow(x), verbose=0)

    class ImagesOnly:  # any other iterator of bare image batches
        def __len__(self):
            return 2

        def __next__(self):
            return x[:6]

    with pytest.raises(TypeError, match=r"each batch of the iterator must be a pair \(x_batch, y_batch\), "
                                        r"got ndarray of shape \(6, 8, 8, 2\)"):
        model.fit(ImagesOnly(), verbose=0)


@pytest.mark.parametrize("template, validation, message", [
    ("w-{val_loss:.3f}.npz", False, r"w-\{val_loss:\.3f\}\.npz' cannot be filled \(KeyError\('val_loss'\)\).*"
                                    r"\['loss', 'accuracy'\]"),
    ("w-{epoch:02d}-{auc}.npz", True, r"KeyError\('auc'\).*'val_accuracy'"),
    ("w-{loss:d}.npz", True, r"cannot be filled \(ValueError"),
    ("w-{}.npz", True, r"cannot be filled \(IndexError"),
])
@pytest.mark.model
@pytest.mark.training
def test_model_checkpoint_template_checked_before_training(tmp_path, template, validation, message):
    from tinyconv.callbacks import ModelCheckpoint
    model, x, y = _compiled_tiny_model()
    extra = {"validation_data": (x, y)} if validation else {}
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, verbose=0, callbacks=[ModelCheckpoint(tmp_path / template)], **extra)
    assert model.optimizer.iterations == 0 and list(tmp_path.iterdir()) == []


@pytest.mark.model
@pytest.mark.training
def test_model_checkpoint_template_that_fits_is_filled(tmp_path):
    from tinyconv.callbacks import ModelCheckpoint
    model, x, y = _compiled_tiny_model()
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[ModelCheckpoint(tmp_path / "w-{epoch:02d}-{val_loss:.3f}.npz")])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n[:5] for n in names] == ["w-01-", "w-02-"] and all(n.endswith(".npz") for n in names)


# --- weights files ------------------------------------------------------------------------------------

@pytest.mark.model
def test_load_weights_on_files_that_are_not_weights(tmp_path):
    from tinyconv.training import checkpoint
    model, x, y = _compiled_tiny_model()
    np.savez(tmp_path / "foreign.npz", np.zeros(3), weights=np.ones(2))
    np.save(tmp_path / "array.npy", np.zeros((3, 3)))
    checkpoint.save_checkpoint(tmp_path / "state.npz", model, epoch=0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"foreign\.npz: not a tinyconv weights file: its entry '(arr_0|weights)' is not named"):
        model.load_weights(tmp_path / "foreign.npz")
    with pytest.raises(ValueError, match=r"array\.npy: holds a single NumPy array \(\.npy\), not an \.npz archive"):
        model.load_weights(tmp_path / "array.npy")
    with pytest.raises(ValueError, match=r"state\.npz: this is a training checkpoint.*load_checkpoint"):
        model.load_weights(tmp_path / "state.npz")
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.model
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_weights_refuses_non_finite_values(tmp_path, bad):
    model, x, y = _compiled_tiny_model()
    arrays = weights_file.weight_arrays(model)
    arrays["006/dense/kernel"][3, 1] = bad
    np.savez(tmp_path / "w.npz", **arrays)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"w\.npz: layer 6 'dense' 'kernel' holds NaN or inf values"):
        model.load_weights(tmp_path / "w.npz")
    for w0, w1 in zip(before, model.get_weights()):  # the layers before it were not set either
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.training
def test_a_monitor_the_logs_never_hold_is_refused_before_training(tmp_path):
    from tinyconv.callbacks import EarlyStopping, ModelCheckpoint
    model, x, y = _compiled_tiny_model()
    for callback, owner in ((EarlyStopping(monitor="val_loss"), "EarlyStopping"),
                            (ModelCheckpoint(tmp_path / "w.npz", save_best_only=True), "ModelCheckpoint")):
        with pytest.raises(ValueError, match=rf"{owner}: monitor 'val_loss' will not be in this run's logs "
                                             r"\['loss', 'accuracy'\] \(val_ values need validation_data or validation_split\); "
                                             r"Keras would train on and only warn"):
            model.fit(x, y, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match=r"monitor 'val_auc' will not be in this run's logs \['loss', 'accuracy', "
                                         r"'val_loss', 'val_accuracy'\]"):
        model.fit(x, y, verbose=0, validation_data=(x, y), callbacks=[EarlyStopping(monitor="val_auc")])
    assert model.optimizer.iterations == 0 and list(tmp_path.iterdir()) == []


@pytest.mark.loss
@pytest.mark.training
def test_fit_on_outputs_that_are_not_probabilities_suggests_logits():
    from tinyconv import Model
    from tinyconv.layers import Flatten
    inputs = Input((8, 8, 2))
    model = Model(inputs, Dense(3)(Flatten()(inputs)))  # no sigmoid: raw scores
    model.compile("sgd", "binary_crossentropy")
    x = np.random.default_rng(0).random((6, 8, 8, 2)).astype(np.float32) * 10
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"outputs must be probabilities in \[0, 1\].*from_logits=True"):
        model.fit(x, np.zeros((6, 3), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"outputs must be probabilities in \[0, 1\].*from_logits=True"):
        model.evaluate(x, np.zeros((6, 3), np.float32))
    assert model.optimizer.iterations == 0
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
