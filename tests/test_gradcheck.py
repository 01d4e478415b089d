"""Float64 gradient checks for every layer, both BCE forms and the whole seed model."""
import numpy as np
import pytest

from tinyconv import backend
from tinyconv.diagnostics import gradcheck
from tinyconv.layers import (Activation, Conv2D, Dense, Dropout, Flatten, Layer, LeakyReLU, MaxPooling2D,
                             ReLU, Sigmoid)
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
    "conv_winograd_6x6_valid": lambda: Conv2D(2, (3, 3), algorithm="winograd_6x6"),
    "leaky_relu": lambda: LeakyReLU(),
    "relu": lambda: ReLU(),
    "sigmoid": lambda: Sigmoid(),
    "activation_sigmoid": lambda: Activation("sigmoid"),
    "flatten": lambda: Flatten(),
    "dropout_training": lambda: Dropout(0.4),
}


@pytest.mark.conv
@pytest.mark.pool
@pytest.mark.activations
@pytest.mark.dense
@pytest.mark.dropout
@pytest.mark.parametrize("name", list(LAYERS))
def test_image_layer(name, rng, device):
    x = away_from_zero(rng, (2, 7, 6, 3))
    report = gradcheck.check_layer(LAYERS[name](), x, training=True)
    assert report.max_rel_error < BOUND and report.kinks == 0, str(report)


@pytest.mark.parametrize("pool, strides, padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"),
                                                     ((2, 3), (1, 2), "valid"), ((3, 2), (1, 1), "same")])
@pytest.mark.pool
def test_max_pooling(pool, strides, padding, rng, device):
    x = tie_free(rng, (2, 7, 6, 3))
    report = gradcheck.check_layer(MaxPooling2D(pool, strides=strides, padding=padding), x)
    assert report.max_rel_error < BOUND and report.kinks == 0, str(report)


@pytest.mark.dense
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_dense(activation, rng, device):
    report = gradcheck.check_layer(Dense(5, activation=activation), away_from_zero(rng, (4, 7)))
    assert report.max_rel_error < BOUND and report.kinks == 0, str(report)


@pytest.mark.loss
@pytest.mark.loss
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy(from_logits, rng):
    y_true = (rng.random((5, 18)) > 0.5).astype(np.float64)
    y_pred = rng.standard_normal((5, 18)) * 3 if from_logits else rng.uniform(0.02, 0.98, (5, 18))
    report = gradcheck.check_loss(BinaryCrossentropy(from_logits=from_logits), y_pred, y_true)
    assert report.max_rel_error < BOUND, str(report)


@pytest.mark.model
@pytest.mark.conv
@pytest.mark.dense
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


@pytest.mark.loss
@pytest.mark.training
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


SIGMOID_ENDINGS = {
    "dense_activation": lambda: [Dense(2, activation="sigmoid")],
    "dense_activation_layer_object": lambda: [Dense(2, activation=Sigmoid())],
    "activation_sigmoid": lambda: [Dense(2), Activation("sigmoid")],
    "bare_sigmoid": lambda: [Dense(2), Sigmoid()],
}


@pytest.mark.loss
@pytest.mark.training
@pytest.mark.model
@pytest.mark.parametrize("ending", list(SIGMOID_ENDINGS))
def test_every_final_sigmoid_is_fused_and_a_saturated_output_still_learns(ending):
    """z = +-40 saturates the sigmoid (p = 1 or 0 in float64) on the wrong side of the labels. Fused, the
    gradient at z is (p - y) / (N * L); through the clipped probability it would be exactly 0."""
    from tinyconv import Sequential
    from tinyconv.layers import Input
    from tinyconv.optimizers import SGD

    model = Sequential([Input((3,)), *SIGMOID_ENDINGS[ending]()])
    dense = next(layer for layer in model.layers if isinstance(layer, Dense))
    kernel = np.array([[20.0, -20.0], [0.0, 0.0], [0.0, 0.0]])
    dense.set_weights([kernel, np.zeros(2)])
    model.compile(SGD(learning_rate=0.5), BinaryCrossentropy())
    assert model.fuse_output
    x = np.array([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])               # z = [[40, -40], [-40, 40]]
    y = np.array([[0.0, 1.0], [1.0, 0.0]])                            # every label on the wrong side
    p = 1 / (1 + np.exp(-x @ kernel))
    dz = (p - y) / (2 * 2)                                            # (p - y) / (N * L)
    assert np.abs(dz).min() > 0.2
    model.train_step((x, y))
    np.testing.assert_allclose(dense.get_weights()[0], kernel - 0.5 * x.T @ dz, rtol=1e-6)
    np.testing.assert_allclose(dense.get_weights()[1], -0.5 * dz.sum(axis=0), rtol=1e-6)


def test_a_new_layer_that_ends_in_a_sigmoid_is_fused_by_saying_so():
    """The rule is the layer's ``ends_in_sigmoid``, not a list of classes: a scaled sigmoid qualifies."""
    from tinyconv import Sequential
    from tinyconv.layers import Input

    class SigmoidOfDouble(Layer):
        ends_in_sigmoid = True

        def forward_logits(self, x, training=False):
            return 2 * x

        def backward_logits(self, dz):
            return 2 * dz

    model = Sequential([Input((3,)), Dense(2), SigmoidOfDouble()])
    plain = Sequential([Input((3,)), Dense(2), ReLU()])
    model.compile("adam", BinaryCrossentropy())
    plain.compile("adam", BinaryCrossentropy())
    assert model.fuse_output and not plain.fuse_output
    x = np.ones((1, 3))
    dense = next(layer for layer in model.layers if isinstance(layer, Dense))
    np.testing.assert_allclose(model.forward_logits(x), 2 * dense.forward(x))


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
            dy *= 1.0 + (self.cache <= 0) * (self.alpha - 1.0)
            return dy

    with pytest.raises(ValueError, match="modified the upstream gradient"):
        gradcheck.check_layer(InPlaceLeakyReLU(), away_from_zero(rng, (2, 4, 4, 2)))


# --- the checker's own rules ---------------------------------------------------------------------

def test_relative_error_hand_values():
    """|a - n| / max(1e-8, |a| + |n|), worked by hand."""
    assert gradcheck.relative_error(1.0, 1.0) == 0.0
    assert gradcheck.relative_error(1.0, 0.5) == pytest.approx(0.5 / 1.5)
    assert gradcheck.relative_error(-1.0, 1.0) == 1.0                 # opposite signs: the largest error
    assert gradcheck.relative_error(0.0, 0.0) == 0.0                  # the floor keeps 0/0 away
    assert gradcheck.relative_error(1e-9, 0.0) == pytest.approx(0.1)  # below the floor: absolute / 1e-8
    assert gradcheck.relative_error(3e-12, 2e-12) == pytest.approx(1e-12 / 1e-8)
    np.testing.assert_allclose(gradcheck.relative_error(np.array([2.0, -3.0]), np.array([1.0, -3.0])),
                               [1 / 3, 0.0])


def test_is_kink_hand_values():
    """A kink's one-sided gap keeps its size at h/10; a smooth gap shrinks tenfold; round-off grows."""
    assert gradcheck.is_kink((1.0, 0.3), (1.0, 0.3))                    # LeakyReLU at 0: 0.7 at both steps
    assert gradcheck.is_kink((1.0, 0.0), (0.6, 0.0))                    # a kink at 0.04 h: 1.0 then 0.6
    assert not gradcheck.is_kink((2e-4 + 1e-5, 2e-4 - 1e-5), (2e-4 + 1e-6, 2e-4 - 1e-6))  # smooth: tenfold
    assert not gradcheck.is_kink((1.0 + 1e-12, 1.0), (1.0 + 1e-11, 1.0))  # round-off: grows tenfold
    assert not gradcheck.is_kink((1.0 + 1e-9, 1.0), (1.0 + 1e-9, 1.0))    # steady but negligible


def test_a_kink_crossed_within_h_is_checked_at_h_over_10():
    """|a - c| with the kink c at 0.4 h beside a: the step-h difference straddles it, its one-sided gap
    shrinks (so the gap rule sees no kink), and only the h/10 step recognises it and gives the slope."""
    h = 1e-5
    a = np.array([0.0, 1.0, -2.0])
    c = a + 0.4 * h
    tensors = {"a": a}
    report = gradcheck.check(lambda: float(np.sum(np.abs(a - c))), {"a": np.sign(a - c)}, tensors, h=h)
    assert report.passed() and report.kinks == 0 and report.checks[0].refined == 3, str(report)
    coarse = gradcheck.one_sided_slopes(abs(h - 0.4 * h), 0.4 * h, abs(-h - 0.4 * h), h)
    fine = gradcheck.one_sided_slopes(abs(h / 10 - 0.4 * h), 0.4 * h, abs(-h / 10 - 0.4 * h), h / 10)
    assert coarse == pytest.approx((0.2, -1.0)) and fine == pytest.approx((-1.0, -1.0))
    assert not gradcheck.is_kink(coarse, fine)
    # A wrong slope is not excused by the kink nearby: it stays wrong at h/10.
    assert not gradcheck.check(lambda: float(np.sum(np.abs(a - c))), {"a": -2 * np.sign(a - c)},
                               tensors, h=h).passed()


def test_a_kink_at_the_point_is_left_out_only_with_an_admissible_value():
    """ReLU at exactly 0: slopes 0 (left) and 1 (right). The analytic 0 or 1 is a one-sided derivative
    and the entry is a kink; an analytic -1 is no derivative at all and fails."""
    a = np.array([0.0, 0.7, -0.4])

    def objective():
        return float(np.sum(np.maximum(a, 0.0)))

    for value in (0.0, 1.0):
        report = gradcheck.check(objective, {"a": np.array([value, 1.0, 0.0])}, {"a": a})
        assert report.passed() and report.kinks == 1, str(report)
    report = gradcheck.check(objective, {"a": np.array([-1.0, 1.0, 0.0])}, {"a": a})
    assert not report.passed() and report.kinks == 0, str(report)


def test_refuses_when_most_entries_are_kinks():
    with pytest.raises(ValueError, match=r"3 of the 4 checked entries of 'input' lie on a kink"):
        gradcheck.check_layer(ReLU(), np.array([[0.0, 0.0, 0.0, 1.0]]))
    # Allowed by the caller: then the report says how few entries were compared.
    report = gradcheck.check(lambda: 0.0, {"a": np.zeros(2)}, {"a": np.zeros(2)}, max_kink_share=1.0)
    assert report.passed()
    with pytest.raises(ValueError, match="max_kink_share"):
        gradcheck.check(lambda: 0.0, {"a": np.zeros(2)}, {"a": np.zeros(2)}, max_kink_share=2)


# --- planted bugs must fail at every input scale --------------------------------------------------

class WrongSquare(Layer):
    """y = x * x with the backward of 1.5 x^2: 3x instead of 2x."""

    def forward(self, x, training=False):
        self.check_input(x)
        self.x = x
        return x * x

    def backward(self, dy):
        return 3 * self.x * dy


class WrongSigmoid(Sigmoid):
    """The derivative written as y (1 + y) instead of y (1 - y)."""

    def backward(self, dy):
        y = self.cache
        return dy * y * (1 + y)


class DoubledDense(Dense):
    """A linear layer whose input gradient is twice the right one (f'' = 0: no curvature to lean on)."""

    def backward_linear(self, dz, input_gradient=True):
        return 2 * super().backward_linear(dz)


PLANTED_BUGS = {"square_3x": WrongSquare, "sigmoid_y_1_plus_y": WrongSigmoid,
                "dense_doubled_dx": lambda: DoubledDense(3)}


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-4, 1e-6])
@pytest.mark.parametrize("bug", list(PLANTED_BUGS))
def test_planted_bug_fails_at_every_scale(bug, scale, rng):
    x = scale * away_from_zero(rng, (4, 5))
    report = gradcheck.check_layer(PLANTED_BUGS[bug](), x)
    assert not report.passed(), str(report)
    assert report.worst.name == "input" and report.max_rel_error > 1e-2, str(report)
    assert report.kinks == 0, str(report)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-4, 1e-6])
def test_the_right_square_passes_at_every_scale(scale, rng):
    """The planted bug's correct twin: the scales alone do not make the check fail."""
    class Square(WrongSquare):
        def backward(self, dy):
            return 2 * self.x * dy

    report = gradcheck.check_layer(Square(), scale * away_from_zero(rng, (4, 5)))
    assert report.passed() and report.kinks == 0, str(report)


def test_the_exercises_judge_catches_the_planted_bug(rng, capsys):
    """The judge of docs/exercises.md on y = x * x with backward 3x at |x| ~ 1e-4, and on its fix."""
    from test_docs import ROOT, python_blocks

    namespace = {}
    exec(python_blocks(ROOT / "docs" / "exercises.md")[0][1], namespace)
    judge = namespace["judge"]
    x = 1e-4 * away_from_zero(rng, (2, 4, 4, 2))
    square = lambda layer, x: x * x  # the definition the judge holds the forward pass to  # noqa: E731
    assert not judge(WrongSquare, x, square)
    assert "FAIL" in capsys.readouterr().out

    class Square(WrongSquare):
        def backward(self, dy):
            return 2 * self.x * dy

    assert judge(Square, x, square)
    assert "PASS" in capsys.readouterr().out


# --- correct layers with exact kinks pass ---------------------------------------------------------

@pytest.mark.parametrize("make_layer", [LeakyReLU, ReLU])
def test_exact_zeros_are_kinks_and_pass(make_layer, rng):
    x = away_from_zero(rng, (2, 4, 4, 2))
    x[0, 1, 2, 0] = x[1, 3, 0, 1] = 0.0
    report = gradcheck.check_layer(make_layer(), x)
    assert report.passed() and report.kinks == 2, str(report)


def test_a_bias_that_meets_only_kinks_is_refused(rng):
    """Conv2D + ReLU with a pre-activation exactly 0: every bias entry shifts it across the kink, so no
    bias entry can be compared; the check says so instead of passing."""
    x = away_from_zero(rng, (2, 4, 4, 2))
    x[0, 1, 2, :] = 0.0
    layer = Conv2D(2, (1, 1), activation="relu")
    layer.build(x.shape[1:])
    layer.set_weights([np.eye(2).reshape(1, 1, 2, 2), np.zeros(2)])  # z = x: the ReLU sees the zeros
    with pytest.raises(ValueError, match=r"2 of the 2 checked entries of 'conv2d/bias' lie on a kink"):
        gradcheck.check_layer(layer, x)


@pytest.mark.pool
def test_max_pool_ties_are_kinks_and_pass(rng):
    x = tie_free(rng, (2, 4, 4, 2))
    x[0, 0, 1, 0] = x[0, 0, 0, 0] = x[0, :2, :2, 0].max() + 0.5  # a tied maximum in one window
    report = gradcheck.check_layer(MaxPooling2D(), x)
    assert report.passed() and report.kinks == 2, str(report)


# --- the device: CuPy's scalar views, and the model's device -------------------------------------

class ScalarViews(np.ndarray):
    """NumPy with CuPy's indexing: ``a[i, j]`` is a 0-d *view* that follows later writes, not a copy."""

    def __getitem__(self, index):
        if (isinstance(index, tuple) and len(index) == self.ndim
                and all(isinstance(i, (int, np.integer)) for i in index)):
            return super().__getitem__(index + (Ellipsis,))
        return super().__getitem__(index)


def test_scalar_views_emulate_cupy():
    a = np.zeros((2, 2)).view(ScalarViews)
    kept = a[np.unravel_index(3, a.shape)]
    a[1, 1] = 5.0
    assert kept.item() == 5.0


def test_a_doubled_gradient_fails_with_cupy_like_indexing(rng):
    a = rng.standard_normal((3, 4)).view(ScalarViews)
    w = rng.standard_normal((3, 4))
    before = np.array(a)

    def objective():
        return float(np.sum(w * np.asarray(a) ** 2))

    report = gradcheck.check(objective, {"a": 4 * w * np.asarray(a)}, {"a": a})
    assert not report.passed() and report.kinks == 0, str(report)
    report = gradcheck.check(objective, {"a": 2 * w * np.asarray(a)}, {"a": a})
    assert report.passed() and report.kinks == 0, str(report)
    assert np.array_equal(np.asarray(a), before)  # every entry restored to its exact value


@pytest.mark.dense
def test_a_doubled_dense_kernel_gradient_fails_with_cupy_like_indexing(rng):
    class DoubledKernel(Dense):
        def backward_linear(self, dz, input_gradient=True):
            dx = super().backward_linear(dz)
            self.grads["kernel"] = 2 * self.grads["kernel"]
            return dx

    x = rng.standard_normal((4, 5))
    for make_layer, should_pass in ((Dense, True), (DoubledKernel, False)):
        layer = make_layer(3)
        layer.build(x.shape[1:])
        layer.params["kernel"] = layer.params["kernel"].view(ScalarViews)
        before = np.array(layer.params["kernel"])
        report = gradcheck.check_layer(layer, x)
        failed = [c.name for c in report.checks if c.max_rel_error > BOUND]
        assert failed == ([] if should_pass else [f"{layer.name}/kernel"]), str(report)
        assert report.kinks == 0, str(report)
        assert np.array_equal(np.asarray(layer.params["kernel"]), before)


def test_runs_on_the_layers_device_not_the_current_one(rng, monkeypatch):
    """Parameters on the host, current device "gpu": the check stays on the host (no CuPy touched)."""
    layer = Dense(3)
    x = rng.standard_normal((4, 5))
    layer.build(x.shape[1:])

    def no_gpu_here():
        raise AssertionError("gradcheck asked for the current device instead of the layer's")

    monkeypatch.setattr(backend, "_DEVICE", "gpu")
    monkeypatch.setattr(backend, "_import_cupy", no_gpu_here)
    report = gradcheck.check_layer(layer, x)
    assert report.passed(), str(report)


def test_a_sample_of_entries_reaches_the_end_of_a_tensor():
    """With ``max_checks``, the sample must be drawn over the whole tensor: a gradient wrong only in
    its last tenth fails (a check of the first entries alone would pass it)."""
    x = np.linspace(-1.0, 1.0, 200)
    wrong = 2 * x
    wrong[-20:] += 0.5

    def objective():
        return float(np.sum(x * x))

    with pytest.raises(AssertionError):
        assert gradcheck.check(objective, {"x": wrong}, {"x": x}, max_checks=60).max_rel_error < 1e-6
    report = gradcheck.check(objective, {"x": 2 * x}, {"x": x}, max_checks=60)
    assert report.max_rel_error < 1e-6 and report.checks[0].checked == 60
