"""Keras's tutorial surface, piece by piece, each against an independent reference: loops, scipy,
Pillow, finite differences, and Keras's documented rules."""
import io
import re

import numpy as np
import pytest
from PIL import Image
from scipy.special import expit, log_softmax, softmax

import tinyconv
from tinyconv import Model, Sequential, losses, metrics, regularizers
from tinyconv.diagnostics.gradcheck import check, check_layer
from tinyconv.layers import AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D, Input
from tinyconv.optimizers import SGD, Adam
from tinyconv.utils import array_to_img, img_to_array, load_img, to_categorical

pytestmark = pytest.mark.training


# --- module names ----------------------------------------------------------------------------------
def test_keras_module_paths_exist():
    import tinyconv as keras
    from tinyconv import backend as K
    from tinyconv.models import Model as M, Sequential as S
    from tinyconv.preprocessing import image
    from tinyconv.regularizers import l2
    from tinyconv.utils import to_categorical as tc

    assert (M, S, tc, l2(0.1).l2) == (Model, Sequential, to_categorical, 0.1)
    assert (image.load_img, image.img_to_array, image.array_to_img) == (load_img, img_to_array, array_to_img)
    assert image.ImageDataGenerator is tinyconv.data.ImageDataGenerator

    assert keras.Input is tinyconv.layers.Input and keras.layers.Dense is Dense
    assert keras.optimizers.RMSprop and keras.losses.SparseCategoricalCrossentropy and keras.metrics.BinaryAccuracy
    assert K.image_data_format() == "channels_last" and K.epsilon() == 1e-7 and K.floatx() == "float32"
    Dense(2)
    K.clear_session()
    assert Dense(2).name == "dense"  # names start afresh, as after Keras's clear_session


# --- to_categorical --------------------------------------------------------------------------------
def test_to_categorical_matches_a_loop_and_keras_shape_rules():
    labels = np.array([[2], [0], [1], [2]])
    rows = to_categorical(labels)  # (N, 1): the trailing axis goes; num_classes = max + 1
    expected = np.zeros((4, 3))
    for i, k in enumerate(labels[:, 0]):
        expected[i, k] = 1
    np.testing.assert_array_equal(rows, expected)
    assert rows.dtype == np.float32
    assert to_categorical([1, 0], num_classes=5).shape == (2, 5)
    assert to_categorical(np.array([[0, 1], [1, 1]])).shape == (2, 2, 2)
    for bad, pattern in [([0.5], "whole numbers"), ([-1], ">= 0"), (["a"], "class indices")]:
        with pytest.raises((ValueError, TypeError), match=pattern):
            to_categorical(bad)
    with pytest.raises(ValueError, match="needs num_classes > 3"):
        to_categorical([3], num_classes=3)


# --- sparse labels ---------------------------------------------------------------------------------
@pytest.mark.loss
@pytest.mark.parametrize("shape", [(6,), (6, 1)])
def test_sparse_categorical_crossentropy_is_minus_log_p_of_the_class(shape, float64, rng):
    labels = rng.integers(0, 4, 6)
    z = rng.standard_normal((6, 4))
    expected = -np.mean([log_softmax(z[i])[k] for i, k in enumerate(labels)])
    y = labels.reshape(shape)
    assert losses.SparseCategoricalCrossentropy(from_logits=True).forward(z, y) == pytest.approx(expected, rel=1e-12)
    assert losses.SparseCategoricalCrossentropy().forward(softmax(z, axis=1), y) == pytest.approx(expected, rel=1e-12)
    per_sample = losses.sparse_categorical_crossentropy(y, z, from_logits=True)
    np.testing.assert_allclose(per_sample, [-log_softmax(z[i])[k] for i, k in enumerate(labels)], rtol=1e-12)


@pytest.mark.loss
@pytest.mark.gradcheck
@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_categorical_crossentropy_gradient_check(from_logits, float64, rng):
    labels = rng.integers(0, 5, 7)
    y_pred = rng.standard_normal((7, 5)) if from_logits else rng.uniform(0.05, 1, (7, 5))
    loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    loss.forward(y_pred, labels)
    analytic = {"y_pred": loss.backward()}
    report = check(lambda: loss.forward(y_pred, labels), analytic, {"y_pred": y_pred})
    assert report.passed(), str(report)


@pytest.mark.errors
def test_sparse_labels_are_checked_with_clear_errors():
    loss = losses.SparseCategoricalCrossentropy()
    p = np.full((3, 4), 0.25)
    for bad, pattern in [(np.array([0, 1, 4]), r"lie in \[0, 4\)"), (np.array([0, -1, 2]), r"lie in \[0, 4\)"),
                         (np.array([0, 1.5, 2]), "whole numbers"), (np.eye(3, 4), "one class index per sample"),
                         (np.array([0, 1]), "3 samples but 2")]:
        with pytest.raises(ValueError, match=pattern):
            loss.forward(p, bad)
    model = Sequential([Input((4,)), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.zeros((4, 4), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"model 'sequential': fit: class indices must lie in \[0, 3\)"):
        model.fit(x, np.array([0, 1, 2, 3]), verbose=0)
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_sparse_labels_train_and_accuracy_is_the_argmax_match(rng):
    x = rng.standard_normal((60, 6, 6, 2)).astype(np.float32)
    labels = (x[..., 0].mean(axis=(1, 2)) > 0).astype(int) + (x[..., 1].mean(axis=(1, 2)) > 0)
    model = Sequential([Input((6, 6, 2)), Conv2D(4, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")])
    model.compile(Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy", "acc"])
    history = model.fit(x, labels, epochs=15, batch_size=10, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    result = model.evaluate(x, labels[:, None], return_dict=True)
    p = model.predict(x)
    assert result["accuracy"] == result["acc"] == pytest.approx(np.mean(p.argmax(1) == labels))
    assert result["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(60), labels])), rel=1e-5)


def test_n_labels_for_one_sigmoid_output_as_keras_takes_them(rng):
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = Sequential([Input((5,)), Dense(1, activation="sigmoid")])
    model.compile(SGD(0.5), "binary_crossentropy", metrics=["accuracy"])
    result = model.evaluate(x, y, return_dict=True)
    p = model.predict(x)[:, 0]
    assert result["loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    history = model.fit(x, y, epochs=10, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# --- loss and metric functions ---------------------------------------------------------------------
@pytest.mark.loss
def test_keras_loss_functions_give_one_loss_per_sample(float64, rng):
    z = rng.standard_normal((5, 3))
    y = (rng.random((5, 3)) > 0.5).astype(float)
    p = expit(z)
    np.testing.assert_allclose(losses.binary_crossentropy(y, p), -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1),
                               rtol=1e-10)
    np.testing.assert_allclose(losses.binary_crossentropy(y, z, from_logits=True),
                               -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1), rtol=1e-10)
    onehot = np.eye(3)[rng.integers(0, 3, 5)]
    np.testing.assert_allclose(losses.categorical_crossentropy(onehot, softmax(z, axis=1)),
                               -(onehot * log_softmax(z, axis=1)).sum(axis=1), rtol=1e-10)


def test_losses_and_metrics_passed_as_functions_or_objects():
    model = Sequential([Input((4,)), Dense(3, activation="softmax")])
    model.compile("adam", losses.categorical_crossentropy,
                  metrics=[metrics.categorical_accuracy, metrics.CategoricalAccuracy(name="acc"), "binary_accuracy"])
    assert isinstance(model.loss, losses.CategoricalCrossentropy) and model.fuse_output
    assert model.metrics_names == ["loss", "categorical_accuracy", "acc", "binary_accuracy"]
    with pytest.raises(ValueError, match="subclass of tinyconv.losses.Loss"):
        model.compile("adam", lambda y_true, y_pred: (y_true - y_pred) ** 2)
    with pytest.raises(ValueError, match="two metrics are named alike"):
        model.compile("adam", "categorical_crossentropy", metrics=["acc", "acc"])
    with pytest.raises(ValueError, match="a loss is needed"):
        model.compile("adam")


def test_accuracy_functions_match_loops(rng):
    p = rng.random((8, 4))
    onehot = np.eye(4)[rng.integers(0, 4, 8)]
    labels = onehot.argmax(1)
    binary = (rng.random((8, 4)) > 0.5).astype(float)
    for i in range(8):
        assert metrics.categorical_accuracy(onehot, p)[i] == float(np.argmax(p[i]) == np.argmax(onehot[i]))
        assert metrics.sparse_categorical_accuracy(labels, p)[i] == float(np.argmax(p[i]) == labels[i])
        assert metrics.binary_accuracy(binary, p)[i] == sum((p[i, j] > 0.5) == binary[i, j] for j in range(4)) / 4
    assert metrics.BinaryAccuracy(threshold=0.9)(binary, p)[0] == sum((p[0, j] > 0.9) == binary[0, j]
                                                                       for j in range(4)) / 4


# --- fit, evaluate, summary -------------------------------------------------------------------------
def _classifier():
    model = Sequential([Input((4,)), Dense(2, activation="sigmoid")])
    model.compile(SGD(0.1), "binary_crossentropy")
    return model


def test_validation_split_holds_out_the_last_samples_before_shuffling(rng):
    x = rng.standard_normal((50, 4)).astype(np.float32)
    y = (rng.random((50, 2)) > 0.5).astype(np.float32)
    model = _classifier()
    history = model.fit(x, y, epochs=1, batch_size=8, validation_split=0.2, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[40:], y[40:]), rel=1e-6)
    seen = []  # the training batches never hold the held-out samples (rows 40-49)

    class Watch(tinyconv.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    original = model.train_step
    batches = []
    model.train_step = lambda data: (batches.append(data[0]), original(data))[1]
    model.fit(x, y, epochs=2, batch_size=8, validation_split=0.2, verbose=0, callbacks=[Watch()])
    trained = np.concatenate(batches)
    assert len(seen) == 10 and len(trained) == 80
    assert {row.tobytes() for row in trained} == {row.tobytes() for row in x[:40]}
    with pytest.raises(ValueError, match="validation_split=0.99 of 50 samples leaves no training"):
        model.fit(x, y, validation_split=0.99, verbose=0)
    with pytest.raises(ValueError, match="validation_split must"):
        model.fit(x, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="validation_split needs arrays"):
        model.fit(tinyconv.preprocessing.image.ImageDataGenerator().flow(x.reshape(50, 2, 2, 1), y),
                  validation_split=0.2, verbose=0)


def test_evaluate_steps_and_keras_one_line(rng, capsys):
    x = rng.standard_normal((50, 4)).astype(np.float32)
    y = (rng.random((50, 2)) > 0.5).astype(np.float32)
    model = _classifier()
    assert model.evaluate(x, y, batch_size=10, steps=2) == pytest.approx(model.evaluate(x[:20], y[:20]), rel=1e-6)
    capsys.readouterr()
    model.evaluate(x, y, batch_size=10, verbose=2)
    assert re.fullmatch(r"5/5 - \d+s - \d+ms/step - loss: \d\.\d{4}\n", capsys.readouterr().out)


def test_generator_methods_warn_and_train(rng):
    x = rng.standard_normal((32, 4, 4, 1)).astype(np.float32)
    y = (rng.random((32, 2)) > 0.5).astype(np.float32)
    model = Sequential([Input((4, 4, 1)), Flatten(), Dense(2, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    flow = tinyconv.preprocessing.image.ImageDataGenerator().flow
    with pytest.warns(UserWarning, match="fit_generator is deprecated"):
        history = model.fit_generator(flow(x, y, batch_size=8), epochs=2, verbose=0, workers=4)
    assert len(history.history["loss"]) == 2
    with pytest.warns(UserWarning, match="predict_generator is deprecated"):
        p = model.predict_generator(flow(x, batch_size=8, shuffle=False))
    np.testing.assert_allclose(p, model.predict(x), rtol=1e-6)
    with pytest.raises(ValueError, match="class_weight is not supported"):
        model.fit(x, y, class_weight={0: 1.0, 1: 2.0}, verbose=0)


def test_summary_takes_keras_arguments():
    model = Sequential([Input((8, 8, 1)), Conv2D(2, 3), Flatten(), Dense(3)])
    lines = []
    model.summary(line_length=50, print_fn=lines.append)
    assert max(len(line) for line in lines) == 50 and lines[1] == "_" * 50
    lines = []
    model.summary(positions=[0.4, 0.7, 0.8, 1.0], line_length=80, show_trainable=True, print_fn=lines.append)
    header = lines[2]
    assert "Receptive field" not in header and "Trainable" in header  # Keras's columns, and Trainable
    lines = []
    model.summary(layer_range=["conv2d", "flatten"], print_fn=lines.append)
    table = "\n".join(lines)
    assert "conv2d (Conv2D)" in table and "flatten (Flatten)" in table and "dense (Dense)" not in table
    with pytest.raises(ValueError, match="layer_range must be the names of two layers"):
        model.summary(layer_range=["conv2d", "nope"])
    with pytest.raises(ValueError, match="positions must be 4 increasing"):
        model.summary(positions=[0.5, 0.2, 0.1, 0.05, 0.01])


# --- AveragePooling2D ------------------------------------------------------------------------------
def average_pool_loop(x, pool, strides, padding):
    """TensorFlow's avg_pool as loops: 'same' averages the real pixels of each window only."""
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = pool, strides
    if padding == "valid":
        oh, ow, top, left = (h - ph) // sh + 1, (w - pw) // sw + 1, 0, 0
    else:
        oh, ow = -(-h // sh), -(-w // sw)
        top = max((oh - 1) * sh + ph - h, 0) // 2
        left = max((ow - 1) * sw + pw - w, 0) // 2
    y = np.zeros((n, oh, ow, c))
    for r in range(oh):
        for q in range(ow):
            rows = [i for i in range(r * sh - top, r * sh - top + ph) if 0 <= i < h]
            cols = [j for j in range(q * sw - left, q * sw - left + pw) if 0 <= j < w]
            y[:, r, q, :] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return y


@pytest.mark.pool
@pytest.mark.gradcheck
@pytest.mark.parametrize("pool, strides, padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"),
                                                    ((3, 2), (1, 2), "valid"), ((2, 3), (1, 1), "same")])
def test_average_pooling_matches_tensorflow_rule_and_gradient_check(pool, strides, padding, float64, rng):
    x = rng.standard_normal((2, 7, 6, 3))
    layer = AveragePooling2D(pool, strides=strides, padding=padding)
    layer.build(x.shape[1:])
    np.testing.assert_allclose(layer.forward(x), average_pool_loop(x, pool, strides or pool, padding), rtol=1e-12)
    assert check_layer(layer, x).passed()


# --- regularizers -----------------------------------------------------------------------------------
def test_regularizer_penalties_follow_keras_formulas(float64, rng):
    w = rng.standard_normal((3, 4))
    assert float(regularizers.l2(0.01)(w)) == pytest.approx(0.01 * np.sum(w ** 2))
    assert float(regularizers.l1(0.02)(w)) == pytest.approx(0.02 * np.sum(np.abs(w)))
    assert float(regularizers.l1_l2()(w)) == pytest.approx(0.01 * np.sum(np.abs(w)) + 0.01 * np.sum(w ** 2))
    assert float(regularizers.L1L2()(w)) == 0.0
    with pytest.raises(ValueError, match="kernel_regularizer: expected None, a regularizer"):
        Dense(2, kernel_regularizer=0.01)


class RecordingSGD(SGD):
    """Keeps the gradients of a step and changes nothing."""

    def apply(self, params, grads):
        self.seen = [g.copy() for g in grads]


@pytest.mark.gradcheck
def test_the_regularized_training_gradient_is_the_derivative_of_the_logged_loss(float64, rng):
    inputs = Input((5, 5, 2))
    hidden = Conv2D(3, 3, activation="tanh", kernel_regularizer=regularizers.l1_l2(0.03, 0.05),
                    bias_regularizer=regularizers.l2(0.1))(inputs)
    outputs = Dense(2, activation="sigmoid", kernel_regularizer="l2")(Flatten()(hidden))
    model = Model(inputs, outputs)
    model.compile(RecordingSGD(), "binary_crossentropy")
    x = rng.standard_normal((4, 5, 5, 2))
    y = (rng.random((4, 2)) > 0.5).astype(float)
    model.train_step((x, y))
    names = [f"{layer.name}/{key}" for layer in model.layers for key in layer.params]
    analytic = dict(zip(names, model.optimizer.seen))
    tensors = dict(zip(names, model.trainable_params()))
    report = check(lambda: model.test_step((x, y))["loss"], analytic, tensors)
    assert report.passed(), str(report)
    penalty = (0.03 * np.abs(model.layers[1].params["kernel"]).sum() + 0.05 * (model.layers[1].params["kernel"] ** 2).sum()
               + 0.1 * (model.layers[1].params["bias"] ** 2).sum() + 0.01 * (model.layers[3].params["kernel"] ** 2).sum())
    p = model.predict(x)
    data_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert model.evaluate(x, y) == pytest.approx(data_loss + penalty, rel=1e-10)


# --- image helpers ------------------------------------------------------------------------------------
def test_image_helpers_match_pillow(tmp_path, rng):
    pixels = rng.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_img(tmp_path / "a.png")
    np.testing.assert_array_equal(img_to_array(image), pixels.astype(np.float32))
    grey = img_to_array(load_img(tmp_path / "a.png", color_mode="grayscale", target_size=(6, 5)))
    expected = np.asarray(Image.fromarray(pixels).convert("L").resize((5, 6), Image.NEAREST), dtype=np.float32)
    np.testing.assert_array_equal(grey, expected[:, :, None])
    with open(tmp_path / "a.png", "rb") as f:
        assert load_img(io.BytesIO(f.read())).size == (10, 12)
    back = array_to_img(pixels.astype(np.float32) / 255)  # scaled: min -> 0, max -> 255
    stretched = (pixels - pixels.min()) / (pixels.max() - pixels.min()) * 255
    np.testing.assert_array_equal(np.asarray(back), np.round(stretched).astype(np.uint8))
    for call, pattern in [(lambda: load_img(tmp_path / "missing.png"), "no such file"),
                          (lambda: load_img(tmp_path / "a.png", color_mode="hsv"), "color_mode must be"),
                          (lambda: load_img(tmp_path / "a.png", target_size=(0, 4)), "target_size must be"),
                          (lambda: img_to_array(image, data_format="channels_first"), "channels-last"),
                          (lambda: array_to_img(np.zeros((4, 4, 2))), "1, 3 or 4 channels")]:
        with pytest.raises((ValueError, FileNotFoundError), match=pattern):
            call()


def test_global_average_pooling_after_add_of_keras_names(rng):
    x = Input((4, 4, 2))
    merged = tinyconv.layers.add([Conv2D(2, 1)(x), Conv2D(2, 1)(x)])
    joined = tinyconv.layers.concatenate([merged, x])
    model = Model(x, GlobalAveragePooling2D()(joined))
    assert model.output_shape == (None, 4)


def test_sequential_layers_leave_out_the_input_layer_as_keras():
    model = Sequential()
    first = Conv2D(2, 3, input_shape=(6, 6, 1))
    model.add(first)
    model.add(Flatten())
    assert model.layers[0] is first and len(model.layers) == 2
    unbuilt = Sequential([Dense(2), Dense(1)])
    assert [type(layer).__name__ for layer in unbuilt.layers] == ["Dense", "Dense"]
    unbuilt.predict(np.zeros((1, 3), np.float32))  # built by its first batch
    assert len(unbuilt.layers) == 2 and unbuilt.layers[0].params["kernel"].shape == (3, 2)
    inputs = Input((3,))
    functional = Model(inputs, Dense(1)(inputs))
    assert type(functional.layers[0]).__name__ == "InputLayer"  # Keras's functional models list it


@pytest.mark.parametrize("name, std, bound", [
    ("he_uniform", np.sqrt(2 / 600), np.sqrt(6 / 600)), ("glorot_normal", np.sqrt(2 / 1000), None),
    ("lecun_normal", np.sqrt(1 / 600), None), ("lecun_uniform", np.sqrt(1 / 600), np.sqrt(3 / 600)),
    ("random_normal", 0.05, None), ("random_uniform", 0.05 / np.sqrt(3), 0.05), ("truncated_normal", None, 0.1)])
def test_keras_initializers_have_keras_variances(name, std, bound):
    """Kernel (600, 400): fan_in 600, fan_out 400. Truncated normals are cut at two (corrected) stds."""
    values = tinyconv.initializers.INITIALIZERS[name]((600, 400))
    if std is not None:
        assert values.std() == pytest.approx(std, rel=0.01)
    if bound is not None:
        assert np.abs(values).max() <= bound
    assert abs(values.mean()) < 0.01 * (std or 0.05)
    Dense(3, kernel_initializer=name)  # accepted by name, as in Keras


# --- Rescaling and Normalization ------------------------------------------------------------------------
@pytest.mark.gradcheck
def test_rescaling_and_normalization_follow_their_formulas_and_gradient_check(float64, rng):
    x = rng.standard_normal((3, 4, 5, 2)) * [2.0, 0.5] + [1.0, -3.0]
    rescale = tinyconv.layers.Rescaling(1 / 255, offset=-1.0)
    rescale.build(x.shape[1:])
    np.testing.assert_allclose(rescale.forward(x), x / 255 - 1, rtol=1e-14)
    assert check_layer(rescale, x).passed()
    adapted = tinyconv.layers.Normalization()
    adapted.adapt(x)
    mean, variance = x.reshape(-1, 2).mean(axis=0), x.reshape(-1, 2).var(axis=0)
    np.testing.assert_allclose(adapted.get_weights()[0], mean, rtol=1e-12)
    np.testing.assert_allclose(adapted.get_weights()[1], variance, rtol=1e-12)
    np.testing.assert_allclose(adapted.forward(x), (x - mean) / np.sqrt(variance), rtol=1e-10)
    assert check_layer(adapted, x).passed()
    given = tinyconv.layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0])
    given.build(x.shape[1:])
    assert given.weights == {}  # constants of the configuration, as in Keras
    np.testing.assert_allclose(given.forward(x), (x - [1.0, 2.0]) / [2.0, 1e-7], rtol=1e-12)


@pytest.mark.errors
def test_normalization_refuses_what_it_cannot_do():
    for kwargs, pattern in [({"mean": [1.0]}, "give both mean and variance"), ({"axis": 1}, "axis must be -1"),
                            ({"invert": True}, "invert=True"), ({"mean": [0.0], "variance": [-1.0]}, "variance >= 0")]:
        with pytest.raises(ValueError, match=pattern):
            tinyconv.layers.Normalization(**kwargs)
    with pytest.raises(ValueError, match="was given its mean and variance"):
        tinyconv.layers.Normalization(mean=[0.0], variance=[1.0]).adapt(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite numeric array"):
        tinyconv.layers.Normalization().adapt(np.array([[np.nan, 1.0]]))
