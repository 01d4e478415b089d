"""Functional Model and Sequential: Keras's parameter totals, summary, weights in memory and on disk."""
import numpy as np
import pytest

import tinyconv
from tinyconv import Model, Sequential, kernels
from tinyconv.layers import Conv2D, Dense, Flatten, Input, LeakyReLU, MaxPooling2D
from tinyconv.zoo import seed_cnn

pytestmark = pytest.mark.model


def keras_seed_total(h, w, c):
    """The seed CNN's parameter count, from the layer formulas (independent of the code)."""
    convs = (3 * 3 * c * 64 + 64) + (3 * 3 * 64 * 64 + 64) + (3 * 3 * 64 * 128 + 128) + (3 * 3 * 128 * 128 + 128)
    flat = (h // 2 // 2) * (w // 2 // 2) * 128
    return convs + flat * 128 + 128 + 128 * 18 + 18


@pytest.mark.parametrize("shape, keras_total", [((32, 32, 3), 1_311_186), ((48, 48, 3), 2_621_906),
                                                ((64, 64, 3), 4_456_914), ((64, 64, 1), 4_455_762)])
def test_parameter_totals_equal_keras(shape, keras_total):
    assert keras_seed_total(*shape) == keras_total
    assert seed_cnn(shape).count_params() == keras_total


def test_summary_table_with_receptive_fields():
    lines = []
    seed_cnn((32, 32, 3)).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 1,311,186" in text
    assert "Trainable params: 1,311,186" in text
    rows = {line.split()[0]: line for line in lines if "(" in line and "Layer" not in line and "Model" not in line}
    assert "(None, 32, 32, 64)" in rows["conv2d"] and "1,792" in rows["conv2d"]
    # Receptive fields: 3, 5, pool -> 6, 10, 14, pool -> 16 (size grows by (k-1) * jump).
    expected = {"conv2d": "3x3", "conv2d_1": "5x5", "max_pooling2d": "6x6", "conv2d_2": "10x10",
                "conv2d_3": "14x14", "max_pooling2d_1": "16x16", "dense": "whole input"}
    for name, field in expected.items():
        assert rows[name].rstrip().endswith(field), rows[name]


def test_summary_counts_each_layers_flops_and_output_bytes_as_by_hand():
    """A hand count, layer by layer, for a batch of 8 (float32, 4 bytes a value)."""
    from tinyconv.layers import AveragePooling2D, Conv2DTranspose
    inputs = Input((6, 6, 2))
    conv = Conv2D(4, (3, 3))(inputs)                        # valid: 4x4x4 out
    act = LeakyReLU()(conv)
    pool = MaxPooling2D((2, 2))(act)                          # 2x2x4
    up = Conv2DTranspose(3, (2, 2), strides=2)(pool)          # 4x4x3, each of 2x2 inputs paints 2x2x3x4
    avg = AveragePooling2D((2, 2))(up)                        # 2x2x3
    out = Dense(5)(Flatten()(avg))                            # 12 -> 5
    lines = []
    Model(inputs, out).summary(print_fn=lines.append, batch_size=8)
    rows = {line.split()[0]: line for line in lines if "(" in line and "Layer" not in line and "Model" not in line}
    hand = {  # FLOPs for the batch (2 per multiply-add; 1 per element or window element), output bytes
        "conv2d": (8 * 2 * (4 * 4) * (3 * 3 * 2 * 4), 8 * 4 * 4 * 4 * 4),
        "leaky_re_lu": (8 * 4 * 4 * 4, 8 * 4 * 4 * 4 * 4),
        "max_pooling2d": (8 * (2 * 2 * 4) * 4, 8 * 2 * 2 * 4 * 4),
        "conv2d_transpose": (8 * 2 * (2 * 2) * (2 * 2 * 3 * 4), 8 * 4 * 4 * 3 * 4),
        "average_pooling2d": (8 * (2 * 2 * 3) * 4, 8 * 2 * 2 * 3 * 4),
        "flatten": (0, 8 * 12 * 4),
        "dense": (8 * 2 * 12 * 5, 8 * 5 * 4),
    }
    from tinyconv.diagnostics.cost import readable
    for name, (flops, output_bytes) in hand.items():
        assert f" {readable(flops, 'FLOPs')} " in rows[name] and rows[name].rstrip().endswith(readable(output_bytes, "B", 1024)), \
            (name, rows[name])
    total = sum(f for f, _ in hand.values())
    assert any(line.startswith(f"Forward pass, batch 8: {readable(total, 'FLOPs')}") for line in lines), lines[-3:]
    assert readable(2304, "FLOPs") == "2.3 KFLOPs" and readable(3 * 2 ** 20, "B", 1024) == "3 MiB"


def test_seed_forward_backward_float32_batch32(rng):
    model = seed_cnn((32, 32, 3))
    x = rng.random((32, 32, 32, 3)).astype(np.float32)
    y = model.forward(x, training=True)
    assert y.shape == (32, 18) and y.dtype == np.float32
    assert np.all((y > 0) & (y < 1))
    dx = model.backward(np.ones_like(y) / y.size)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in model.gradients())


class DenseWithOwnBackward(Dense):
    """A user's layer written against the simple extension point, backward_linear(dz)."""

    def backward_linear(self, dz):
        return super().backward_linear(dz)


@pytest.mark.parametrize("first", ["conv_im2col", "conv_winograd", "dense", "leaky_relu", "user_dense"])
def test_backward_without_input_gradient_gives_the_same_parameter_gradients(first, rng, monkeypatch):
    image, flat = (6, 6, 2), (72,)
    shape, first_layers = {"conv_im2col": (image, [Conv2D(4, 3), Flatten()]),
                           "conv_winograd": (image, [Conv2D(4, 3, algorithm="winograd"), Flatten()]),
                           "dense": (flat, [Dense(4)]),
                           "leaky_relu": (image, [LeakyReLU(), Conv2D(4, 3), Flatten()]),
                           "user_dense": (flat, [DenseWithOwnBackward(4)])}[first]
    model = Sequential([Input(shape), *first_layers, Dense(3, activation="sigmoid")])
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    model.forward(x, training=True)
    dx = model.backward(dy)
    full = [g.copy() for g in model.gradients()]
    if first.startswith("conv"):  # the skipped input gradient is the one place these kernels run
        for name in ("col2im", "winograd_input_transform_adjoint"):
            monkeypatch.setattr(kernels, name, lambda *args: pytest.fail(f"{name} ran"))
    assert dx.shape == x.shape
    model.forward(x, training=True)  # backward let the caches go: one forward serves one backward
    assert model.backward(dy, input_gradient=False) is None
    for a, b in zip(model.gradients(), full):
        np.testing.assert_array_equal(a, b)


class RecordingLeakyReLU(LeakyReLU):
    """A LeakyReLU that writes down, when its backward starts, which layers still hold a cache."""

    def __init__(self, model_layers, seen, **kwargs):
        super().__init__(**kwargs)
        self.model_layers, self.seen = model_layers, seen

    def backward(self, dy):
        self.seen[self.name] = [layer.name for layer in self.model_layers if layer.cache is not None]
        return super().backward(dy)


@pytest.mark.parametrize("graph", ["chain", "branches"])
def test_backward_lets_each_cache_go_before_the_layers_below_run(graph, rng):
    """One forward's caches serve one backward, and each goes as soon as its layer's backward has
    run: when a layer starts its backward, no layer above it holds anything (what bounds the
    training step's peak memory)."""
    layers, seen = [], {}
    inputs = Input((6, 6, 2))
    x = RecordingLeakyReLU(layers, seen, name="low")(Conv2D(4, 3, padding="same", name="conv_a")(inputs))
    x = MaxPooling2D(name="pool")(x)
    above = Conv2D(4, 3, padding="same", name="conv_b")(x)
    if graph == "branches":
        above = tinyconv.layers.Add(name="add")([above, x])
    x = RecordingLeakyReLU(layers, seen, name="high")(above)
    model = Model(inputs, Dense(3, name="head")(Flatten(name="flat")(x)))
    layers.extend(model.layers)
    model.forward(rng.standard_normal((2, 6, 6, 2)).astype(np.float32), training=True)
    assert {layer.name for layer in layers if layer.cache is not None} >= {"conv_a", "low", "pool", "conv_b", "high", "head"}
    model.backward(np.ones((2, 3), np.float32))
    assert seen["high"] == ["conv_a", "low", "pool", "conv_b", "high"]
    assert seen["low"] == ["conv_a", "low"]
    assert all(layer.cache is None for layer in layers)
    with pytest.raises(RuntimeError, match=r"layer 'head' \(Dense\): backward was called before forward \(or "
                                           r"again after one backward\)"):
        model.backward(np.ones((2, 3), np.float32))


def caches_held(model) -> list[str]:
    """The layers (and activations inside Conv2D or Dense) holding a forward's cache."""
    inner = [(f"{layer.name}/activation", layer.activation) for layer in model.layers
             if getattr(layer, "activation", None) is not None]
    return [name for name, layer in [(layer.name, layer) for layer in model.layers] + inner if layer.cache is not None]


@pytest.mark.training
def test_predict_and_evaluate_keep_no_caches(rng):
    """No backward follows predict or evaluate: each layer's cache goes as soon as it has run, and
    the outputs are those of a forward that keeps them."""
    model = seed_cnn((8, 8, 3))
    model.compile("adam", "binary_crossentropy")
    x = rng.standard_normal((5, 8, 8, 3)).astype(np.float32)
    y = (rng.random((5, 18)) > 0.5).astype(np.float32)
    kept = model.forward(x)
    assert "dense_1/activation" in caches_held(model) and len(caches_held(model)) >= 10
    predicted = model.predict(x, batch_size=5)  # one batch, as the forward above: the same products
    assert caches_held(model) == []
    np.testing.assert_array_equal(predicted, kept)
    model.forward(x)
    model.evaluate(x, y, batch_size=2, verbose=0)  # fused with the loss: forward_logits
    assert caches_held(model) == []


def test_sequential_equals_functional(rng):
    layers = lambda: [Conv2D(4, 3, padding="same"), LeakyReLU(), MaxPooling2D(), Flatten(), Dense(2)]
    inputs = Input((6, 6, 2))
    x = inputs
    for layer in layers():
        x = layer(x)
    functional = Model(inputs, x)
    sequential = Sequential([Input((6, 6, 2)), *layers()])
    deferred = Sequential(layers())  # shape taken from the first batch
    batch = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    deferred.forward(batch)
    sequential.set_weights(functional.get_weights())
    deferred.set_weights(functional.get_weights())
    np.testing.assert_array_equal(sequential.forward(batch), functional.forward(batch))
    np.testing.assert_array_equal(deferred.forward(batch), functional.forward(batch))
    with_input_shape = Sequential([Conv2D(4, 3, input_shape=(6, 6, 2))])
    assert with_input_shape.output_shape == (None, 4, 4, 4)


def test_weights_round_trip_through_npz(tmp_path, rng):
    model = seed_cnn((8, 8, 3))
    path = tmp_path / "w.npz"
    model.save_weights(path)
    other = seed_cnn((8, 8, 3))
    assert not np.array_equal(other.get_weights()[0], model.get_weights()[0])
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary file left behind


def test_float64_models(rng):
    tinyconv.set_floatx("float64")
    model = seed_cnn((8, 8, 1))
    assert model.dtype == np.float64
    assert model.forward(rng.random((2, 8, 8, 1))).dtype == np.float64


def test_int_images_are_cast_to_the_model_dtype(rng):
    model = seed_cnn((8, 8, 1))
    images = rng.integers(0, 255, (2, 8, 8, 1)).astype(np.uint8)
    np.testing.assert_allclose(model.forward(images), model.forward(images.astype(np.float32)))


@pytest.mark.errors
@pytest.mark.parametrize("make, error, message", [
    (lambda: Dense(2, name="block/dense"), ValueError, r"Dense: name cannot contain '/'"),
    (lambda: Conv2D(2, 3, name="/"), ValueError, r"Conv2D: name cannot contain '/'"),
    (lambda: Input((3,), name="images/raw"), ValueError, r"name cannot contain '/'"),
    (lambda: Dense(2, name=""), ValueError, r"Dense: name must be a non-empty string"),
    (lambda: Dense(2, name=7), TypeError, r"Dense: name must be a string"),
    (lambda: Sequential([Dense(2)], name="a/b"), ValueError, r"Sequential: name cannot contain '/'"),
    (lambda: Sequential([Dense(2, name="same"), Dense(2, name="same")]), ValueError,
     r"two layers are named 'same'; layer names must be unique"),
])
def test_names_that_would_break_saving_are_refused_where_they_are_given(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.errors
def test_a_functional_model_refuses_a_slash_in_its_name_and_two_layers_of_one_name():
    inputs = Input((3,))
    with pytest.raises(ValueError, match=r"Model: name cannot contain '/'"):
        Model(inputs, Dense(2)(inputs), name="run/1")
    inputs = Input((3,))
    hidden = Dense(4, name="twin")(inputs)
    with pytest.raises(ValueError, match=r"two layers are named 'twin'"):
        Model(inputs, Dense(2, name="twin")(hidden))


@pytest.mark.training
@pytest.mark.parametrize("name", ["features 1", "conv.block-2", "Zellkern_µ", "a\\b", "x:y"])
def test_every_accepted_name_saves_weights_and_checkpoints_that_load(tmp_path, name):
    """Any name a layer accepts must survive a weights file and a checkpoint (fails for a name the
    file format cannot hold)."""
    from tinyconv.training import checkpoint
    inputs = Input((4, 4, 1))
    outputs = Dense(2, name=f"{name} out")(Flatten()(Conv2D(2, 3, name=name)(inputs)))
    model = Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    model.save_weights(tmp_path / "w.npz")
    checkpoint.save_checkpoint(tmp_path / "c.npz", model, epoch=1)
    expected = [w.copy() for w in model.get_weights()]
    for w in model.layers[1].params.values():
        w[...] = 0
    model.load_weights(tmp_path / "w.npz")
    for w0, w1 in zip(expected, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    assert checkpoint.load_checkpoint(tmp_path / "c.npz", model) == 1
