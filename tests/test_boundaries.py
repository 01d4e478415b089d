"""Boundary values, each pinned against an independent reference: where ``>`` and ``>=`` differ,
where a range is exactly 0 or 1, where a prediction is clipped, where a count starts.

Off-by-one and wrong-comparison bugs live exactly here and nowhere else, so a suite that only
tries typical values never sees them.
"""
import math

import numpy as np
import pytest
from scipy.special import expit

import tinyconv
from tinyconv import Model, kernels
from tinyconv.diagnostics import metrics
from tinyconv.callbacks import EarlyStopping, ModelCheckpoint
from tinyconv.data import ImageDataGenerator
from tinyconv.layers import Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D, ReLU, Sigmoid
from tinyconv.losses import BinaryCrossentropy
from tinyconv.optimizers import SGD, Adam

EPS = 1e-7  # Keras's backend.epsilon()


# --- binary cross-entropy at clipped predictions ---------------------------------------------------

def keras_bce(p, y):
    """Keras: clip p to [eps, 1 - eps] in p's own dtype, then the mean of -(y log p + (1-y) log(1-p))."""
    dtype = p.dtype.type
    p = np.clip(p, dtype(EPS), dtype(1 - EPS))
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(dtype(1) - p))))


@pytest.mark.loss
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_at_p_zero_and_one_is_keras_clipped_value_and_finite(dtype):
    y_pred = np.array([[0.0, 1.0, 0.0, 1.0]], dtype)
    y_true = np.array([[1.0, 0.0, 0.0, 1.0]], dtype)
    loss = BinaryCrossentropy().forward(y_pred, y_true)
    assert math.isfinite(loss)
    assert loss == pytest.approx(keras_bce(y_pred, y_true), rel=1e-6)
    # a confident wrong answer costs -log(eps) = 16.12 in float64; in float32 1 - eps rounds to
    # 1 - 2^-23, so predicting 1 for a 0 label costs 23 ln 2 = 15.94
    wrong_one = BinaryCrossentropy().forward(np.array([[1.0]], dtype), np.array([[0.0]], dtype))
    assert wrong_one == pytest.approx(23 * math.log(2) if dtype is np.float32 else -math.log(EPS), rel=1e-6)
    wrong_zero = BinaryCrossentropy().forward(np.array([[0.0]], dtype), np.array([[1.0]], dtype))
    assert wrong_zero == pytest.approx(-math.log(EPS), rel=1e-6)


@pytest.mark.loss
def test_bce_gradient_is_exactly_zero_where_the_prediction_was_clipped():
    p = np.array([[0.0, EPS / 2, EPS, 0.3, 1 - EPS, 1 - EPS / 2, 1.0]])
    y = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]])
    loss = BinaryCrossentropy()
    loss.forward(p, y)
    grad = loss.backward()
    clipped = np.array([[True, True, False, False, False, True, True]])
    assert np.all(grad[clipped] == 0.0)  # exactly, not approximately
    # inside [eps, 1 - eps] (boundaries included: there the clip is the identity) the formula
    inside = ~clipped
    with np.errstate(divide="ignore"):
        expected = (-y / p + (1 - y) / (1 - p)) / p.size
    np.testing.assert_allclose(grad[inside], expected[inside], rtol=1e-12)
    assert np.all(grad[inside] != 0)


@pytest.mark.loss
@pytest.mark.parametrize("p", [2 * EPS, 0.2, 0.5, 0.9, 1 - 2 * EPS])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_bce_gradient_near_the_clip_equals_central_differences(p, y):
    loss = BinaryCrossentropy()
    loss.forward(np.array([[p]]), np.array([[y]]))
    grad = loss.backward()[0, 0]
    h = 1e-4 * min(p, 1 - p)  # stays inside the clip
    numeric = (loss.forward(np.array([[p + h]]), np.array([[y]])) -
               loss.forward(np.array([[p - h]]), np.array([[y]]))) / (2 * h)
    assert grad == pytest.approx(numeric, rel=1e-6)


@pytest.mark.loss
@pytest.mark.parametrize("z", [-1000.0, -30.0, 0.0, 30.0, 1000.0])
def test_bce_logits_form_at_extreme_logits(z):
    for label in (0.0, 1.0):
        loss = BinaryCrossentropy(from_logits=True)
        value = loss.forward(np.array([[z]]), np.array([[label]]))
        # -(y log sigmoid(z) + (1 - y) log sigmoid(-z)), with -log sigmoid(z) = log(1 + exp(-z))
        expected = label * np.logaddexp(0.0, -z) + (1 - label) * np.logaddexp(0.0, z)
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-300)
        assert loss.backward()[0, 0] == pytest.approx(expit(z) - label, rel=1e-12, abs=1e-300)


# --- accuracy at exactly p = 0.5 ----------------------------------------------------------------------

def constant_half_model(fused: bool) -> Model:
    """Outputs exactly 0.5: a zero kernel, and a sigmoid of 0 (fused with the loss) or a bias of 0.5."""
    inputs = Input((2, 2, 1))
    x = Flatten()(inputs)
    if fused:
        outputs = Dense(4, activation="sigmoid", kernel_initializer="zeros")(x)
    else:
        outputs = Dense(4, kernel_initializer="zeros", bias_initializer=lambda shape: np.full(shape, 0.5))(x)
    model = Model(inputs, outputs)
    model.compile(SGD(learning_rate=0.1), "binary_crossentropy", metrics=["accuracy"])
    assert model.fuse_output == fused
    return model


@pytest.mark.training
@pytest.mark.parametrize("fused", [True, False])
def test_accuracy_at_exactly_one_half_agrees_with_binary_accuracy(fused, rng):
    x = rng.random((8, 2, 2, 1)).astype(np.float32)
    y = (np.arange(32).reshape(8, 4) % 3 == 0).astype(np.float32)  # 11 ones, 21 zeros
    model = constant_half_model(fused)
    p = model.predict(x)
    assert np.all(p == 0.5)
    expected = float(np.mean(y == 0))  # p > 0.5 is false, so every prediction says 0
    assert metrics.binary_accuracy(y, p) == expected
    assert model.evaluate(x, y)[1] == pytest.approx(expected, abs=1e-12)
    # fit logs the accuracy of the predictions made before each step: one batch, one step
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert history.history["accuracy"][0] == pytest.approx(expected, abs=1e-12)


# --- ImageDataGenerator ranges -------------------------------------------------------------------------

def shift_draws(size, **kwargs):
    gen = ImageDataGenerator(**kwargs)
    return np.array([gen.get_random_transform((size, size, 1), seed=s)["ty"] for s in range(300)])


@pytest.mark.augment
def test_a_float_shift_of_exactly_one_is_in_pixels():
    # Keras: a float below 1 is a fraction of the size, 1 or more is pixels
    pixels = shift_draws(20, width_shift_range=1.0)
    assert np.abs(pixels).max() <= 1.0 and np.abs(pixels).max() > 0.9
    assert len(np.unique(pixels)) > 250  # uniform, not integers
    fraction = shift_draws(20, width_shift_range=0.99)
    assert np.abs(fraction).max() <= 0.99 * 20 and np.abs(fraction).max() > 15
    above = shift_draws(20, width_shift_range=1.5)
    assert np.abs(above).max() <= 1.5 and np.abs(above).max() > 1.3


@pytest.mark.augment
def test_integer_and_sequence_shift_boundaries():
    assert set(shift_draws(20, width_shift_range=1)) == {0.0}  # Keras: np.random.choice(1) is always 0
    assert set(shift_draws(20, width_shift_range=2)) == {-1.0, 0.0, 1.0}
    assert set(shift_draws(20, width_shift_range=[1.0])) == {-1.0, 1.0}  # max >= 1: pixels
    assert set(shift_draws(20, width_shift_range=[0.5])) == {-10.0, 10.0}  # max < 1: fractions
    assert set(shift_draws(20, width_shift_range=[0.5, 1.0])) == {-1.0, -0.5, 0.5, 1.0}
    assert set(shift_draws(20, width_shift_range=0.0)) == {0.0}


def documented_draws(size, seed, rotation=0.0, width=0.0, height=0.0, shear=0.0, zoom=(1.0, 1.0),
                     horizontal=False, vertical=False):
    """The draws in docs/augmentation.md's order; a range of 0 (zoom [1, 1]) draws nothing."""
    rng = np.random.default_rng(seed)
    out = {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0}
    if rotation:
        out["theta"] = rng.uniform(-rotation, rotation, 1)[0]
    if height:
        out["tx"] = rng.uniform(-height, height, 1)[0] * (size if height < 1 else 1)
    if width:
        out["ty"] = rng.uniform(-width, width, 1)[0] * (size if width < 1 else 1)
    if shear:
        out["shear"] = rng.uniform(-shear, shear, 1)[0]
    if zoom != (1.0, 1.0):
        out["zx"], out["zy"] = rng.uniform(zoom[0], zoom[1], (2, 1))[:, 0]
    out["flip_horizontal"] = bool(rng.random(1)[0] < 0.5) and horizontal
    out["flip_vertical"] = bool(rng.random(1)[0] < 0.5) and vertical
    return out


@pytest.mark.parametrize("kwargs, documented", [
    ({}, {}),
    ({"rotation_range": 0, "shear_range": 5}, {"shear": 5}),
    ({"zoom_range": 0.0, "width_shift_range": 0.2}, {"width": 0.2}),
    ({"zoom_range": [1, 1], "height_shift_range": 3.0}, {"height": 3.0}),
    ({"zoom_range": [1.0, 1.2], "rotation_range": 10}, {"zoom": (1.0, 1.2), "rotation": 10}),
    ({"zoom_range": [0.5, 0.5]}, {"zoom": (0.5, 0.5)}),
    ({"zoom_range": 0.2, "horizontal_flip": True, "vertical_flip": True},
     {"zoom": (0.8, 1.2), "horizontal": True, "vertical": True}),
])
@pytest.mark.augment
def test_zero_ranges_draw_nothing_and_the_rest_keep_their_order(kwargs, documented):
    gen = ImageDataGenerator(**kwargs)
    for seed in range(5):
        got = gen.get_random_transform((12, 12, 1), seed=seed)
        expected = documented_draws(12, seed, **documented)
        assert got.keys() == expected.keys()
        for key in got:
            assert got[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key


@pytest.mark.augment
@pytest.mark.parametrize("rescale", [None, 0, 0.0])
def test_rescale_none_or_zero_leaves_pixels_alone(rescale, rng):
    x = rng.random((2, 3, 3, 2)).astype(np.float32)
    np.testing.assert_array_equal(ImageDataGenerator(rescale=rescale).standardize(x), x)
    np.testing.assert_array_equal(ImageDataGenerator(rescale=-2).standardize(x), -2 * x)


@pytest.mark.augment
@pytest.mark.parametrize("n, batch_size, sizes", [(8, 4, [4, 4]), (9, 4, [4, 4, 1]), (3, 4, [3]), (4, 1, [1] * 4)])
def test_flow_batches_at_exact_multiples(n, batch_size, sizes):
    it = ImageDataGenerator().flow(np.zeros((n, 2, 2, 1), np.float32), np.zeros((n, 1)), batch_size=batch_size)
    assert len(it) == len(sizes)
    assert [len(next(it)[0]) for _ in sizes] == sizes
    assert len(next(it)[0]) == sizes[0]  # the next epoch starts over


# --- layers at their kinks and limits -----------------------------------------------------------------

@pytest.mark.activations
@pytest.mark.parametrize("use_reference", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make, alpha", [(lambda: LeakyReLU(alpha=0.25), 0.25), (ReLU, 0.0)])
def test_leaky_relu_at_exactly_zero_takes_the_left_slope(make, alpha, dtype, use_reference):
    x = np.array([[-3.0, -1e-30, -0.0, 0.0, 1e-30, 2.0]], dtype)
    dy = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype)
    with kernels.reference_kernels(use_reference):
        layer = make()
        y = layer.forward(x)
        dx = layer.backward(dy)
    positive = x > 0
    np.testing.assert_array_equal(y, np.where(positive, x, alpha * x))
    np.testing.assert_array_equal(dx, np.where(positive, dy, alpha * dy))  # f'(0) = alpha, as documented


@pytest.mark.activations
def test_sigmoid_at_zero_and_at_the_extremes():
    x = np.array([[0.0, -0.0, -745.0, 745.0, -20.0, 20.0]])
    layer = Sigmoid()
    y = layer.forward(x)
    assert y[0, 0] == 0.5 and y[0, 1] == 0.5
    np.testing.assert_allclose(y, expit(x), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), expit(x) * (1 - expit(x)), rtol=1e-12, atol=1e-300)


@pytest.mark.dropout
def test_dropout_rate_zero_is_the_identity_in_training(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    layer = Dropout(0.0)
    np.testing.assert_array_equal(layer.forward(x, training=True), x)
    np.testing.assert_array_equal(layer.backward(2 * x), 2 * x)


@pytest.mark.dropout
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.95])
def test_dropout_mask_and_scale_equal_the_definition(rate, rng):
    x = rng.standard_normal((40, 30))
    seed = 11
    keep = np.random.default_rng(seed).random(x.shape) >= rate  # drop with probability rate
    layer = Dropout(rate, seed=seed)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, np.where(keep, x / (1 - rate), 0.0), rtol=1e-12)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), np.where(keep, 1 / (1 - rate), 0.0), rtol=1e-12)


def loop_max_pool_same(x, k, s):
    """TensorFlow's "same" pooling by the definition: pad with -inf (extra on the bottom/right)."""
    n, h, w, c = x.shape
    oh, ow = -(-h // s), -(-w // s)
    ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
    padded = np.full((n, h + ph, w + pw, c), -np.inf)
    padded[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = x
    return np.array([[[[padded[b, r * s:r * s + k, q * s:q * s + k, ch].max() for ch in range(c)]
                       for q in range(ow)] for r in range(oh)] for b in range(n)])


@pytest.mark.pool
@pytest.mark.parametrize("h, w, k, s", [(6, 7, 3, 2), (5, 5, 2, 2), (7, 4, 3, 1), (8, 8, 1, 3), (5, 6, 4, 3)])
def test_same_max_pooling_with_odd_padding_totals(h, w, k, s, rng):
    x = -rng.random((2, h, w, 2))  # all negative: a zero padding would win, -inf never does
    layer = MaxPooling2D(k, strides=s, padding="same")
    np.testing.assert_array_equal(layer.forward(x), loop_max_pool_same(x, k, s))


@pytest.mark.pool
def test_a_window_exactly_the_input_size_gives_one_pixel():
    assert MaxPooling2D(5)(Input((5, 5, 1))).shape == (None, 1, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        MaxPooling2D(6)(Input((5, 5, 1)))


# --- optimizers at their first step and limits -----------------------------------------------------------

@pytest.mark.optim
def test_adam_first_step_moves_each_weight_by_about_the_learning_rate():
    # t = 1: m = (1 - b1) g, v = (1 - b2) g^2, so the bias-corrected step is lr * g / (|g| + eps / sqrt(1 - b2))
    g = np.array([3.0, -0.02, 1e-5, 0.0])
    w = np.zeros(4)
    Adam(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7).step([w], [g])
    expected = -0.1 * g / (np.abs(g) + 1e-7 / math.sqrt(1 - 0.999))
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w[3] == 0.0


@pytest.mark.optim
def test_adam_with_beta_1_zero_is_rmsprop_with_bias_correction():
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    w = np.zeros(2)
    opt = Adam(learning_rate=0.01, beta_1=0.0, beta_2=0.9, epsilon=1e-7)
    opt.step([w], [g1])
    opt.step([w], [g2])
    v1 = 0.1 * g1 ** 2
    v2 = 0.9 * v1 + 0.1 * g2 ** 2
    step1 = 0.01 * math.sqrt(1 - 0.9) * g1 / (np.sqrt(v1) + 1e-7)
    step2 = 0.01 * math.sqrt(1 - 0.81) * g2 / (np.sqrt(v2) + 1e-7)
    np.testing.assert_allclose(w, -step1 - step2, rtol=1e-12)


@pytest.mark.optim
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_without_momentum_is_plain_gradient_descent(nesterov):
    w = np.array([1.0, 2.0])
    opt = SGD(learning_rate=0.5, momentum=0.0, nesterov=nesterov)
    opt.step([w], [np.array([1.0, -1.0])])
    opt.step([w], [np.array([1.0, -1.0])])
    np.testing.assert_array_equal(w, [0.0, 3.0])


# --- callbacks' comparisons ---------------------------------------------------------------------------

class _Weights:
    stop_training = False

    def get_weights(self):
        return [np.zeros(1)]

    def save_weights(self, path):
        self.saved = getattr(self, "saved", []) + [path]


@pytest.mark.training
def test_early_stopping_an_improvement_must_beat_min_delta_strictly():
    stopper = EarlyStopping(monitor="loss", min_delta=0.25, patience=1)
    stopper.set_model(_Weights())
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"loss": 1.0})
    stopper.on_epoch_end(1, {"loss": 0.75})  # exactly min_delta better: not an improvement (Keras)
    assert stopper.best == 1.0 and stopper.model.stop_training
    stopper = EarlyStopping(monitor="loss", min_delta=0.25, patience=1)
    stopper.set_model(_Weights())
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"loss": 1.0})
    stopper.on_epoch_end(1, {"loss": 0.5})
    assert stopper.best == 0.5 and not stopper.model.stop_training


@pytest.mark.training
def test_early_stopping_stops_when_wait_reaches_patience_not_after():
    stopper = EarlyStopping(monitor="loss", patience=2)
    stopper.set_model(_Weights())
    stopper.on_train_begin()
    for epoch, loss in enumerate([1.0, 1.0]):
        stopper.on_epoch_end(epoch, {"loss": loss})
    assert not stopper.model.stop_training  # one epoch without improvement, patience 2
    stopper.on_epoch_end(2, {"loss": 1.0})
    assert stopper.model.stop_training and stopper.stopped_epoch == 2


@pytest.mark.training
def test_model_checkpoint_best_only_saves_strict_improvements(tmp_path):
    saver = ModelCheckpoint(str(tmp_path / "w-{epoch}.npz"), monitor="val_loss", save_best_only=True)
    saver.set_model(_Weights())
    for epoch, value in enumerate([0.5, 0.5, 0.4, 0.45]):
        saver.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value})
    assert [p.rsplit("-", 1)[1] for p in saver.model.saved] == ["1.npz", "3.npz"]


# --- metrics at the threshold ---------------------------------------------------------------------------

@pytest.mark.training
def test_f1_and_accuracy_count_a_score_of_exactly_the_threshold_as_negative():
    y = np.array([[1], [0], [1], [0]])
    p = np.array([[0.5], [0.5], [0.7], [0.2]])
    # predictions (p > 0.5): 0, 0, 1, 0 -> TP 1, FP 0, FN 1
    assert metrics.binary_accuracy(y, p) == 0.75
    assert metrics.f1_score(y, p)[0] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert metrics.binary_accuracy(y, p, threshold=0.2) == 0.75  # 0.2 > 0.2 is false too: the last is right


@pytest.mark.backend
def test_seed_zero_is_a_seed():
    tinyconv.set_seed(0)
    a = Dropout(0.5).forward(np.ones((4, 4)), training=True)
    tinyconv.set_seed(0)
    np.testing.assert_array_equal(Dropout(0.5).forward(np.ones((4, 4)), training=True), a)
    layer = Dropout(0.5, seed=0)
    assert layer.generator is not None  # seed=0 is a seed, not "no seed"
    np.testing.assert_array_equal(layer.forward(np.ones((4, 4)), training=True),
                                  np.where(np.random.default_rng(0).random((4, 4)) >= 0.5, 2.0, 0.0))


@pytest.mark.dropout
@pytest.mark.backend
def test_dropout_rate_zero_draws_nothing_from_the_seeded_generator():
    from tinyconv import random as tc_random
    before = tc_random.generator("dropout").bit_generator.state
    Dropout(0.0).forward(np.ones((3, 3)), training=True)
    assert tc_random.generator("dropout").bit_generator.state == before  # other layers' masks stay as they were


@pytest.mark.loss
def test_bce_logits_gradient_is_averaged_over_every_label_and_sample(rng):
    z = rng.standard_normal((2, 3)) * 40  # some saturated
    y = (rng.random((2, 3)) < 0.5).astype(np.float64)
    loss = BinaryCrossentropy(from_logits=True)
    expected = np.mean(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z))
    assert loss.forward(z, y) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (expit(z) - y) / 6, rtol=1e-12, atol=1e-300)


@pytest.mark.training
def test_per_label_accuracy_and_report_threshold_strictly():
    y = np.array([[0, 1], [1, 0], [0, 0]])
    p = np.array([[0.5, 0.5], [0.6, 0.4], [0.5, 0.51]])
    # predictions p > 0.5: label a 0, 1, 0 (all right); label b 0, 0, 1 (only the middle one right)
    np.testing.assert_allclose(metrics.per_label_accuracy(y, p), [1.0, 1 / 3])
    rows = metrics.per_label_report(y, p, names=["a", "b"])
    assert [row["accuracy"] for row in rows] == pytest.approx([1.0, 1 / 3, 2 / 3])


@pytest.mark.errors
@pytest.mark.training
def test_metrics_refuse_an_empty_batch():
    with pytest.raises(ValueError, match="binary_accuracy: expected at least one sample, got 0"):
        metrics.binary_accuracy(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.augment
def test_samplewise_std_normalization_adds_keras_epsilon():
    # an image whose std is exactly 1e-6: Keras divides by std + 1e-6, so the values become +-0.5
    x = np.array([1e-6, -1e-6] * 8, dtype=np.float64).reshape(4, 4, 1)
    out = ImageDataGenerator(samplewise_std_normalization=True).standardize(x)
    np.testing.assert_allclose(out, x / (1e-6 + 1e-6), rtol=1e-4)
    constant = np.full((3, 3, 2), 7.0)
    out = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True).standardize(constant)
    np.testing.assert_array_equal(out, np.zeros_like(constant))  # 0 / (0 + eps), never NaN


@pytest.mark.augment
def test_flow_indexing_stops_at_its_length():
    it = ImageDataGenerator().flow(np.zeros((5, 2, 2, 1), np.float32), batch_size=2)
    assert len(it[2]) == 1  # the last, partial batch
    for index in (3, -1):
        with pytest.raises(IndexError, match=rf"batch index {index} out of range \[0, 3\)"):
            it[index]


@pytest.mark.training
def test_early_stopping_takes_the_size_of_min_delta_and_infers_the_mode_from_the_name():
    stopper = EarlyStopping(monitor="loss", min_delta=-0.25, patience=1)  # Keras: |min_delta|
    stopper.set_model(_Weights())
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"loss": 1.0})
    stopper.on_epoch_end(1, {"loss": 0.8})
    assert stopper.best == 1.0 and stopper.model.stop_training
    for monitor, better in [("val_acc", np.greater), ("acc", np.greater), ("val_accuracy", np.greater),
                            ("auc", np.greater), ("val_loss", np.less), ("loss", np.less)]:
        assert EarlyStopping(monitor=monitor).monitor_op is better, monitor
        assert ModelCheckpoint("w.npz", monitor=monitor).monitor_op is better, monitor
    assert EarlyStopping(monitor="val_acc", mode="min").monitor_op is np.less


@pytest.mark.training
def test_early_stopping_reports_a_stop_at_the_second_epoch(capsys):
    stopper = EarlyStopping(monitor="loss", patience=1, verbose=1)
    stopper.set_model(_Weights())
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"loss": 1.0})
    stopper.on_epoch_end(1, {"loss": 1.5})
    stopper.on_train_end()
    assert "Epoch 2: early stopping" in capsys.readouterr().out


@pytest.mark.errors
def test_long_values_are_shortened_in_messages():
    with pytest.raises(TypeError) as caught:
        Dense("x" * 200)
    message = str(caught.value)
    assert "x" * 50 in message and "x" * 60 not in message and "..." in message
    with pytest.raises(TypeError) as caught:
        Dense("y" * 40)
    assert str(caught.value).endswith("got '" + "y" * 40 + "'")  # short enough to show whole


@pytest.mark.conv
def test_he_normal_on_a_conv_kernel_uses_the_receptive_field_times_input_channels():
    # Keras's fans for (KH, KW, C_in, F): fan_in = KH*KW*C_in (here 36), not KH*KW*F (here 576)
    tinyconv.set_seed(0)
    from tinyconv.layers import Conv2D
    layer = Conv2D(64, 3, kernel_initializer="he_normal")
    layer.build((8, 8, 4))
    assert layer.params["kernel"].std() == pytest.approx(math.sqrt(2 / 36), rel=0.05)


@pytest.mark.errors
@pytest.mark.training
def test_evaluate_refuses_an_empty_batch_of_images():
    from training_fixtures import tiny_model
    with pytest.raises(ValueError, match="at least one image"):
        tiny_model().evaluate(np.zeros((0, 8, 8, 2), np.float32), np.zeros((0, 3), np.float32))


@pytest.mark.augment
def test_featurewise_std_alone_keeps_no_mean(rng):
    x = rng.random((6, 4, 4, 2)).astype(np.float32) * 3 + 1
    gen = ImageDataGenerator(featurewise_std_normalization=True)
    gen.fit(x)
    assert gen.mean is None  # Keras centres to compute the std, but only featurewise_center subtracts
    np.testing.assert_allclose(gen.std.ravel(), x.std(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(gen.standardize(x), x / (x.std(axis=(0, 1, 2)) + 1e-6), rtol=1e-5)
