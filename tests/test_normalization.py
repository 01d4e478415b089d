"""BatchNormalization: the formulas, Keras's moving statistics and weights, gradients, kernels, parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyconv
from tinyconv import Model, kernels
from tinyconv.training import checkpoint
from tinyconv.diagnostics.gradcheck import check_layer, check_model
from tinyconv.kernels import cpu, reference
from tinyconv.layers import BatchNormalization, Conv2D, Dense, Flatten, Input, LeakyReLU

pytestmark = pytest.mark.norm


def direct(x, mean, var, gamma, beta, eps):
    """The formula, written out per channel of the last axis."""
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def test_training_forward_uses_batch_statistics_and_updates_the_moving_ones(float64, rng):
    x = rng.standard_normal((5, 4, 3, 6)) * 3 + 2
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build(x.shape[1:])
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    layer.set_weights([gamma, beta, np.full(6, 0.5), np.full(6, 2.0)])
    y = layer.forward(x, training=True)
    flat = x.reshape(-1, 6)
    mean = flat.sum(axis=0) / len(flat)
    var = ((flat - mean) ** 2).sum(axis=0) / len(flat)  # biased
    np.testing.assert_allclose(y, direct(x, mean, var, gamma, beta, 1e-3), rtol=1e-12, atol=1e-12)
    moving_mean, moving_var = layer.get_weights()[2:]
    np.testing.assert_allclose(moving_mean, 0.5 * 0.9 + mean * 0.1, rtol=1e-13)
    np.testing.assert_allclose(moving_var, 2.0 * 0.9 + var * 0.1, rtol=1e-13)


def test_inference_uses_the_moving_statistics_and_changes_nothing(float64, rng):
    x = rng.standard_normal((3, 2, 2, 4))
    layer = BatchNormalization(epsilon=0.01)
    layer.build(x.shape[1:])
    weights = [rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4), rng.random(4) + 0.5]
    layer.set_weights(weights)
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y, direct(x, weights[2], weights[3], weights[0], weights[1], 0.01), rtol=1e-12)
    for before, after in zip(weights, layer.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_keras_weights_order_counts_and_no_optimizer_access():
    inputs = Input((8, 8, 3))
    x = BatchNormalization()(Conv2D(4, 3)(inputs))
    x = BatchNormalization(center=False)(Flatten()(x))
    model = Model(inputs, Dense(2)(x))
    bn, bn_no_center = [layer for layer in model.layers if isinstance(layer, BatchNormalization)]
    assert list(bn.weights) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert list(bn_no_center.weights) == ["gamma", "moving_mean", "moving_variance"]
    assert [w.shape for w in bn.get_weights()] == [(4,)] * 4
    np.testing.assert_array_equal(bn.get_weights()[0], 1)
    np.testing.assert_array_equal(bn.get_weights()[3], 1)
    # Keras: conv 3*3*3*4 + 4 = 112; BN 4 * 4 = 16 (8 trainable); BN on 144 features, no beta:
    # 3 * 144 (144 trainable); dense 144 * 2 + 2 = 290.
    assert model.count_params() == 112 + 16 + 3 * 144 + 290
    assert model.count_trainable_params() == 112 + 8 + 144 + 290
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 296" in lines and "Trainable params: 554" in lines
    moving = [id(a) for layer in (bn, bn_no_center) for a in layer.non_trainable_params.values()]
    assert not set(moving) & {id(p) for p in model.trainable_params()}
    assert len(model.trainable_params()) == len(model.gradients()) == 2 + 2 + 1 + 2


@pytest.mark.parametrize("axis, shape", [(-1, (4, 3, 3, 5)), (3, (4, 3, 3, 5)), (1, (4, 3, 3, 5)),
                                         (2, (4, 3, 3, 5)), (-1, (6, 7))])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_match_finite_differences(axis, shape, training, float64, rng):
    layer = BatchNormalization(axis=axis)
    x = rng.standard_normal(shape) * 2 + 1
    layer.build(x.shape[1:])
    # gamma away from 0 keeps every dL/dx entry large next to the round-off of L (rel. error).
    c = layer.get_weights()[0].shape
    gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
    layer.set_weights([gamma, 0.1 * rng.standard_normal(c), rng.standard_normal(c), rng.uniform(0.5, 1.5, c)])
    report = check_layer(layer, x, training=training)
    assert report.passed(), str(report)
    assert report.kinks == 0


@pytest.mark.parametrize("center, scale", [(False, True), (True, False), (False, False)])
def test_gradients_without_center_or_scale(center, scale, float64, rng):
    layer = BatchNormalization(center=center, scale=scale)
    report = check_layer(layer, rng.standard_normal((3, 4, 2)), training=True)
    assert report.passed(), str(report)
    assert sorted(layer.grads) == sorted(["gamma"] * scale + ["beta"] * center)


def test_a_model_with_batchnorm_passes_the_gradient_check_in_training_mode(float64, rng):
    inputs = Input((5, 5, 2))
    x = LeakyReLU(0.1)(BatchNormalization()(Conv2D(3, 3, use_bias=False)(inputs)))
    model = Model(inputs, Dense(2)(Flatten()(x)))
    report = check_model(model, rng.standard_normal((4, 5, 5, 2)), training=True)
    assert report.passed(), str(report)


def test_a_bias_just_before_batchnorm_gets_no_gradient(float64, rng):
    """Training-mode BatchNorm subtracts the batch mean, so a constant added before it cancels."""
    inputs = Input((5, 5, 2))
    conv = Conv2D(3, 3)
    model = Model(inputs, Dense(2)(Flatten()(BatchNormalization()(conv(inputs)))))
    y = model.forward(rng.standard_normal((4, 5, 5, 2)), training=True)
    model.backward(rng.standard_normal(y.shape))
    assert np.abs(conv.grads["bias"]).max() < 1e-12 < np.abs(conv.grads["kernel"]).max()


@pytest.mark.kernels
@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 300), c=st.integers(1, 9), training=st.booleans(), seed=st.integers(0, 2**16))
def test_numba_kernels_equal_the_reference(m, c, training, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, c)) * 3 + 1
    for fast, slow in zip(cpu.batchnorm_statistics(x), reference.batchnorm_statistics(x)):
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)
    mean, var = reference.batchnorm_statistics(x)
    inv_std, gamma, beta = 1 / np.sqrt(var + 1e-3), rng.standard_normal(c), rng.standard_normal(c)
    for fast, slow in zip(cpu.batchnorm_forward(x, mean, inv_std, gamma, beta),
                          reference.batchnorm_forward(x, mean, inv_std, gamma, beta)):
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    x_hat = reference.batchnorm_forward(x, mean, inv_std, gamma, beta)[1]
    dy = rng.standard_normal((m, c))
    for fast, slow in zip(cpu.batchnorm_backward(dy, x_hat, gamma * inv_std, training),
                          reference.batchnorm_backward(dy, x_hat, gamma * inv_std, training)):
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-11)


@pytest.mark.kernels
def test_float32_statistics_stay_accurate_for_an_offset_batch(rng):
    """A large mean next to a small spread: the two-pass variance keeps float32 honest."""
    x = (1000 + rng.standard_normal((32 * 16 * 16, 8))).astype(np.float32)
    exact = x.astype(np.float64).var(axis=0)
    for module in (cpu, reference):
        mean, var = module.batchnorm_statistics(x)
        assert mean.dtype == var.dtype == np.float32
        np.testing.assert_allclose(var, exact, rtol=1e-3)


def test_batchnorm_runs_on_every_device(device, rng):
    x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for where in ("cpu", device):
        tinyconv.set_device(where)
        tinyconv.set_seed(0)
        layer = BatchNormalization()
        y = layer.forward(tinyconv.to_device(x), training=True)
        dx = layer.backward(tinyconv.to_device(dy))
        results.append([tinyconv.to_numpy(a) for a in (y, dx, layer.grads["gamma"], *layer.weights.values())])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def bn_model():
    inputs = Input((6, 6, 2))
    x = LeakyReLU()(BatchNormalization(momentum=0.5)(Conv2D(3, 3, padding="same")(inputs)))
    return Model(inputs, Dense(2, activation="sigmoid")(Flatten()(x)))


def test_moving_statistics_are_saved_loaded_and_resumed(tmp_path, rng):
    x = rng.random((16, 6, 6, 2)).astype(np.float32)
    y = (rng.random((16, 2)) > 0.5).astype(np.float32)

    def fresh():
        tinyconv.set_seed(1)
        model = bn_model()
        model.compile("adam", "binary_crossentropy")
        return model

    straight = fresh()
    straight.fit(x, y, epochs=2, batch_size=8, verbose=0)
    bn = next(layer for layer in straight.layers if isinstance(layer, BatchNormalization))
    assert not np.allclose(bn.get_weights()[2], 0)  # the moving mean moved
    straight.save_weights(tmp_path / "w.npz")
    loaded = fresh()
    loaded.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(loaded.predict(x), straight.predict(x))

    first = fresh()
    first.fit(x, y, epochs=1, batch_size=8, verbose=0)
    checkpoint.save_checkpoint(tmp_path / "state.npz", first, epoch=1)
    resumed = fresh()
    resumed.fit(x, y, epochs=1, batch_size=8, verbose=0)  # moves the statistics elsewhere first
    resumed = fresh()
    epoch = checkpoint.load_checkpoint(tmp_path / "state.npz", resumed)
    resumed.fit(x, y, epochs=2, batch_size=8, verbose=0, initial_epoch=epoch)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_matches_pytorch(float64, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 5, 5, 3)) * 2 + 1
    dy = rng.standard_normal(x.shape)
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build(x.shape[1:])
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    layer.set_weights([gamma, beta, np.zeros(3), np.ones(3)])
    reference_bn = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.1, dtype=torch.float64)  # torch: 1 - momentum
    with torch.no_grad():
        reference_bn.weight.copy_(torch.from_numpy(gamma))
        reference_bn.bias.copy_(torch.from_numpy(beta))
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    yt = reference_bn(xt)
    yt.backward(torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()))
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.grads["gamma"], reference_bn.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.grads["beta"], reference_bn.bias.grad.numpy(), rtol=1e-10)
    m = x.size // 3
    np.testing.assert_allclose(layer.get_weights()[2], reference_bn.running_mean.numpy(), rtol=1e-12)
    # PyTorch updates running_var with the unbiased variance, Keras with the biased one.
    unbiased_update = reference_bn.running_var.numpy() - 0.9
    np.testing.assert_allclose(layer.get_weights()[3] - 0.9, unbiased_update * (m - 1) / m, rtol=1e-10)


@pytest.mark.errors
@pytest.mark.parametrize("kwargs, error, match", [
    ({"axis": 0}, ValueError, "batch axis"), ({"axis": 1.0}, TypeError, "axis must be an integer"),
    ({"momentum": 1.5}, ValueError, "momentum must be"), ({"momentum": float("nan")}, ValueError, "finite"),
    ({"epsilon": 0}, ValueError, "epsilon must be a finite number > 0"), ({"epsilon": "small"}, TypeError, "finite number"),
    ({"center": "yes"}, TypeError, "center must be True or False"),
    ({"gamma_initializer": "nope"}, ValueError, "unknown initializer")])
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        layer = BatchNormalization(**kwargs)
        layer.build((4, 4, 2))


@pytest.mark.errors
def test_axis_out_of_range_is_reported_at_build():
    with pytest.raises(ValueError, match="axis 4 is out of range"):
        BatchNormalization(axis=4)(Input((4, 4, 2)))
