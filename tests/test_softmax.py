"""Softmax, categorical cross-entropy (and its fusion with a final softmax), GlobalAveragePooling2D."""
import numpy as np
import pytest
from scipy.special import log_softmax, softmax

import tinyconv
from tinyconv import Model, Sequential
from tinyconv.diagnostics.gradcheck import check_layer, check_loss, check_model
from tinyconv.layers import (Activation, Conv2D, Dense, GlobalAveragePooling2D, Input, LeakyReLU, Softmax)
from tinyconv.losses import BinaryCrossentropy, CategoricalCrossentropy

pytestmark = pytest.mark.activations


def one_hot(labels, k):
    return np.eye(k)[labels]


@pytest.mark.parametrize("axis, shape", [(-1, (4, 5)), (1, (3, 4, 6)), (2, (3, 4, 6)), (-1, (2, 3, 3, 4))])
def test_softmax_matches_scipy_and_its_gradient_check(axis, shape, float64, rng):
    x = rng.standard_normal(shape)  # not saturated: tiny gradients would drown in round-off
    layer = Softmax(axis=axis)
    np.testing.assert_allclose(layer.forward(x), softmax(x, axis=axis), rtol=1e-13)
    assert check_layer(layer, x).passed()


def test_softmax_survives_huge_logits():
    y = Softmax().forward(np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32))
    np.testing.assert_array_equal(y, [[1, 0, 0]])


@pytest.mark.loss
def test_categorical_crossentropy_matches_the_formula_and_keras_clipping(float64, rng):
    labels = rng.integers(0, 4, 6)
    y = one_hot(labels, 4)
    z = rng.standard_normal((6, 4))
    p = softmax(z, axis=1)
    expected = -np.mean(np.log(p[np.arange(6), labels]))
    assert CategoricalCrossentropy().forward(p, y) == pytest.approx(expected, rel=1e-12)
    assert CategoricalCrossentropy(from_logits=True).forward(z, y) == pytest.approx(expected, rel=1e-12)
    # Keras rescales rows to sum 1, then clips to [1e-7, 1 - 1e-7].
    unnormalised = np.array([[2.0, 2.0], [0.0, 1.0]])
    target = np.array([[1.0, 0.0], [1.0, 0.0]])
    keras = -(np.log(0.5) + np.log(1e-7)) / 2
    assert CategoricalCrossentropy().forward(unnormalised, target) == pytest.approx(keras, rel=1e-12)


@pytest.mark.loss
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy_gradient_check(from_logits, float64, rng):
    y = one_hot(rng.integers(0, 5, 7), 5)
    y[0] = [0.2, 0.3, 0.5, 0, 0]  # soft labels too
    z = rng.standard_normal((7, 5))
    y_pred = z if from_logits else rng.uniform(0.05, 1, (7, 5))  # rows need not sum to 1
    report = check_loss(CategoricalCrossentropy(from_logits=from_logits), y_pred, y)
    assert report.passed(), str(report)


@pytest.mark.loss
def test_logits_gradient_is_p_minus_y_over_n(float64, rng):
    y = one_hot(rng.integers(0, 3, 4), 3)
    z = rng.standard_normal((4, 3))
    loss = CategoricalCrossentropy(from_logits=True)
    loss.forward(z, y)
    np.testing.assert_allclose(loss.backward(), (softmax(z, axis=1) - y) / 4, rtol=1e-13)
    assert loss.forward(z, y) == pytest.approx(-np.mean((y * log_softmax(z, axis=1)).sum(axis=1)))


def classifier(final: str):
    inputs = Input((6, 6, 2))
    x = LeakyReLU()(Conv2D(4, 3, padding="same")(inputs))
    x = GlobalAveragePooling2D()(x)
    if final == "activation=":
        outputs = Dense(3, activation="softmax")(x)
    elif final == "Activation":
        outputs = Activation("softmax")(Dense(3)(x))
    else:
        outputs = Softmax()(Dense(3)(x))
    return Model(inputs, outputs)


@pytest.mark.training
@pytest.mark.parametrize("final", ["activation=", "Activation", "Softmax"])
def test_a_final_softmax_is_fused_with_categorical_crossentropy(final, rng):
    model = classifier(final)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    assert model.fuse_output
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    y = one_hot(rng.integers(0, 3, 5), 3).astype(np.float32)
    loss, p, _ = model._loss_on_device(x, model.to_model_device(y), training=False, keep_caches=False)
    np.testing.assert_allclose(p, model.forward(x), rtol=1e-5, atol=1e-7)
    assert float(loss) == pytest.approx(CategoricalCrossentropy().forward(model.forward(x), y), rel=1e-5)
    z = model.forward_logits(x)
    model.logits_loss.forward(z, y)
    np.testing.assert_allclose(model.logits_loss.backward(), (p - y) / 5, rtol=1e-5, atol=1e-7)


@pytest.mark.training
def test_fused_softmax_keeps_learning_where_the_probability_form_is_clipped(float64):
    """A saturated wrong answer: the clipped probability form gives no gradient, the fused one does."""
    model = Sequential([Input((2,)), Dense(2, activation="softmax")])
    model.set_weights([np.array([[40.0, -40.0], [0.0, 0.0]]), np.zeros(2)])
    x, y = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    model.compile("sgd", "categorical_crossentropy")
    before = model.get_weights()[0].copy()
    model.train_step((x, y))
    assert np.abs(model.get_weights()[0] - before).max() > 0.005
    plain = Sequential([Input((2,)), Dense(2), Softmax(axis=1)])
    plain.set_weights([before, np.zeros(2)])
    plain.compile("sgd", CategoricalCrossentropy())
    assert plain.fuse_output  # axis 1 is the last axis of (N, 2)


@pytest.mark.training
def test_categorical_accuracy_with_categorical_crossentropy(rng):
    model = classifier("activation=")
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy", "binary_accuracy"])
    x = rng.standard_normal((40, 6, 6, 2)).astype(np.float32)
    y = one_hot(rng.integers(0, 3, 40), 3).astype(np.float32)
    result = model.evaluate(x, y, return_dict=True)
    p = model.predict(x)
    assert result["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))
    assert result["binary_accuracy"] == pytest.approx(np.mean((p > 0.5) == y))


@pytest.mark.training
def test_softmax_classifier_learns(rng):
    x = rng.standard_normal((60, 6, 6, 2)).astype(np.float32)
    labels = (x[..., 0].mean(axis=(1, 2)) > 0).astype(int) + (x[..., 1].mean(axis=(1, 2)) > 0)
    y = one_hot(labels, 3).astype(np.float32)
    model = classifier("activation=")
    model.compile(tinyconv.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=10, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


@pytest.mark.pool
def test_global_average_pooling_matches_the_mean_and_its_gradient_check(float64, rng):
    x = rng.standard_normal((3, 4, 5, 2))
    layer = GlobalAveragePooling2D()
    np.testing.assert_allclose(layer.forward(x), x.mean(axis=(1, 2)), rtol=1e-13)
    assert check_layer(layer, x).passed()
    dx = layer.backward(np.ones((3, 2)))
    assert dx.flags.c_contiguous and np.allclose(dx, 1 / 20)


def test_new_layers_on_every_device(device, rng):
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    results = []
    for where in ("cpu", device):
        tinyconv.set_device(where)
        tinyconv.set_seed(0)
        model = classifier("Softmax")
        y = one_hot([0, 2], 3).astype(np.float32)
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        loss = model.train_step((tinyconv.to_device(x), y))["loss"]
        results.append((loss, model.predict(x)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


def test_a_model_with_gap_and_softmax_passes_the_gradient_check(float64, rng):
    assert check_model(classifier("Softmax"), rng.standard_normal((2, 6, 6, 2))).passed()


@pytest.mark.errors
def test_clear_errors():
    with pytest.raises(ValueError, match="batch axis"):
        Softmax(axis=0)
    with pytest.raises(TypeError, match="axis must be an integer"):
        Softmax(axis="last")
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        Softmax(axis=3)(Input((4, 4)))
    with pytest.raises(ValueError, match="GlobalAveragePooling2D.*height, width"):
        GlobalAveragePooling2D()(Input((4,)))
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        CategoricalCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match="probabilities"):
        CategoricalCrossentropy().forward(np.array([[-0.1, 1.1]]), np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive sum"):
        CategoricalCrossentropy().forward(np.zeros((1, 2)), np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="unknown metric .auc."):
        Sequential([Input((2,)), Dense(2)]).compile("adam", BinaryCrossentropy(), metrics=["auc"])


@pytest.mark.loss
def test_categorical_crossentropy_from_logits_is_stable_row_by_row():
    """Each row is shifted by its own maximum: rows at +500 and at -500 in one batch both give the
    log-sum-exp loss (a shift by the batch's maximum underflows the low row to log 0)."""
    from scipy.special import log_softmax
    z = np.array([[500.0, 499.0, 498.0], [-500.0, -501.0, -499.5]])
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = CategoricalCrossentropy(from_logits=True)
    expected = -(y * log_softmax(z, axis=1)).sum(axis=1).mean()
    assert loss.forward(z, y) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (np.exp(log_softmax(z, axis=1)) - y) / 2, rtol=1e-10, atol=1e-15)
