"""Branching models: Add, Concatenate, fan-out gradients summed, graphs that train, save and resume."""
import numpy as np
import pytest

import tinyconv
from tinyconv import Model
from tinyconv.training import checkpoint
from tinyconv.diagnostics.gradcheck import check_layer, check_model
from tinyconv.layers import (Activation, Add, Concatenate, Conv2D, Dense, Flatten, Input, InputLayer, LeakyReLU,
                             MaxPooling2D)
from tinyconv.zoo import seed_cnn

pytestmark = pytest.mark.graph


def residual_model(shape=(6, 6, 2), filters=2, n_labels=3):
    """x -> conv a -> leaky -> conv b; y = leaky(x + b) -> flatten -> dense (sigmoid)."""
    inputs = Input(shape)
    a = Conv2D(filters, 3, padding="same")(inputs)
    a = LeakyReLU(0.1)(a)
    b = Conv2D(filters, 3, padding="same")(a)
    merged = Add()([inputs, b])
    h = LeakyReLU(0.1)(merged)
    outputs = Dense(n_labels, activation="sigmoid")(Flatten()(h))
    return Model(inputs, outputs)


def concatenating_model(shape=(6, 6, 2)):
    """Two branches of different widths concatenated along the channels."""
    inputs = Input(shape)
    left = Conv2D(3, 1)(inputs)
    right = MaxPooling2D(3, strides=1, padding="same")(Conv2D(2, 3, padding="same")(inputs))
    merged = Concatenate()([left, right])
    outputs = Dense(2)(Flatten()(LeakyReLU(0.1)(merged)))
    return Model(inputs, outputs)


def by_name(model):
    return {layer.name: layer for layer in model.layers}


def test_layers_are_in_topological_order_and_the_chain_keeps_its_plan():
    model = residual_model()
    position = {id(layer): i for i, layer in enumerate(model.layers)}
    assert isinstance(model.layers[0], InputLayer)
    for i, sources in enumerate(model.inbound):
        assert all(j < i for j in sources)
    add = by_name(model)["add"]
    assert len(model.inbound[position[id(add)]]) == 2
    assert not model.chain
    assert seed_cnn().chain  # the seed CNN runs the plain loop


def test_residual_forward_equals_the_layers_composed_by_hand(rng):
    model = residual_model()
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    layers = by_name(model)
    a = layers["leaky_re_lu"].forward(layers["conv2d"].forward(x))
    b = layers["conv2d_1"].forward(a)
    h = np.where(x + b > 0, x + b, 0.1 * (x + b))
    z = h.reshape(4, -1) @ layers["dense"].params["kernel"] + layers["dense"].params["bias"]
    np.testing.assert_allclose(model.forward(x), 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)


def test_concatenate_forward_equals_numpy_concatenate(rng):
    model = concatenating_model()
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    layers = by_name(model)
    left = layers["conv2d"].forward(x)
    right = layers["max_pooling2d"].forward(layers["conv2d_1"].forward(x))
    expected = np.concatenate([left, right], axis=3)
    np.testing.assert_array_equal(layers["concatenate"].forward([left, right]), expected)
    assert layers["concatenate"].output_shape == (6, 6, 5)


@pytest.mark.parametrize("build", [residual_model, concatenating_model])
def test_graph_gradients_match_finite_differences(build, float64, rng):
    model = build()
    x = rng.standard_normal((2, 6, 6, 2))
    report = check_model(model, x)
    assert report.passed(), str(report)
    assert report.kinks <= 2


def test_fan_out_sums_the_gradients_of_every_use(float64, rng):
    """y = dense_1(x) + dense_2(x): dL/dx = dL/dy W1^T + dL/dy W2^T, the sum over both uses of x."""
    inputs = Input((4,))
    y = Add()([Dense(3)(inputs), Dense(3)(inputs)])
    model = Model(inputs, y)
    x = rng.standard_normal((5, 4))
    dy = rng.standard_normal((5, 3))
    model.forward(x)
    dx = model.backward(dy)
    w1, w2 = (layer.params["kernel"] for layer in model.layers if isinstance(layer, Dense))
    np.testing.assert_allclose(dx, dy @ w1.T + dy @ w2.T, rtol=1e-12)
    assert check_model(model, x).passed()


def test_a_tensor_added_to_itself_gets_twice_the_gradient(float64, rng):
    inputs = Input((3,))
    model = Model(inputs, Add()([inputs, inputs]))
    dy = rng.standard_normal((2, 3))
    model.forward(rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(model.backward(dy), 2 * dy)


@pytest.mark.parametrize("axis", [-1, 1, 2, 3])
def test_concatenate_layer_gradient_check(axis, float64, rng):
    layer = Concatenate(axis=axis)
    shapes = {-1: [(4, 4, 2), (4, 4, 3)], 3: [(4, 4, 2), (4, 4, 3)], 1: [(2, 4, 3), (5, 4, 3)],
              2: [(4, 1, 3), (4, 3, 3)]}[axis]
    xs = [rng.standard_normal((2, *shape)) for shape in shapes]
    y = layer.forward(xs)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    dy = rng.standard_normal(y.shape)
    dxs = layer.backward(dy)
    offsets = np.cumsum([0] + [shape[axis - 1 if axis > 0 else -1] for shape in shapes])
    for dx, start, stop in zip(dxs, offsets[:-1], offsets[1:]):
        np.testing.assert_array_equal(dx, np.take(dy, np.arange(start, stop), axis=axis))
        assert dx.flags.c_contiguous


def test_training_a_residual_model_lowers_the_loss(rng):
    model = residual_model()
    x = rng.random((32, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2))[:, :1] > 0.5).repeat(3, axis=1).astype(np.float32)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y)[0]
    model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert model.evaluate(x, y)[0] < 0.9 * before


def test_summary_has_connected_to_and_merge_receptive_fields():
    inputs = Input((16, 16, 1))
    wide = Conv2D(2, 5, padding="same")(inputs)
    narrow = Conv2D(2, 3, padding="same")(inputs)
    merged = Add()([narrow, wide])
    model = Model(inputs, Conv2D(1, 3, padding="same")(merged))
    lines = []
    model.summary(print_fn=lines.append)
    header = next(line for line in lines if "Layer (type)" in line)
    assert "Connected to" in header
    add_row = lines.index(next(line for line in lines if line.lstrip().startswith("add (Add)")))
    assert "conv2d_1[0][0]" in lines[add_row] and "5x5" in lines[add_row]  # the larger branch
    assert "conv2d[0][0]" in lines[add_row + 1]
    assert lines[add_row + 2].startswith("_")
    assert next(line for line in lines if line.lstrip().startswith("conv2d_2")).rstrip().endswith("7x7")
    chain_lines = []
    seed_cnn().summary(print_fn=chain_lines.append)
    assert not any("Connected to" in line for line in chain_lines)  # Keras omits it for a stack


def test_graph_weights_save_and_load(tmp_path, rng):
    model = residual_model()
    x = rng.random((3, 6, 6, 2)).astype(np.float32)
    model.save_weights(tmp_path / "w.npz")
    tinyconv.set_seed(5)
    other = residual_model()
    assert not np.allclose(other.forward(x), model.forward(x))
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.forward(x), model.forward(x))


def test_graph_resume_equals_an_uninterrupted_run(tmp_path, rng):
    x = rng.random((24, 6, 6, 2)).astype(np.float32)
    y = (rng.random((24, 3)) > 0.5).astype(np.float32)

    def fresh():
        tinyconv.set_seed(3)
        model = residual_model()
        model.compile("adam", "binary_crossentropy")
        return model

    straight = fresh()
    straight.fit(x, y, epochs=2, batch_size=8, verbose=0)
    first = fresh()
    first.fit(x, y, epochs=1, batch_size=8, verbose=0)
    checkpoint.save_checkpoint(tmp_path / "state.npz", first, epoch=1)
    resumed = fresh()
    epoch = checkpoint.load_checkpoint(tmp_path / "state.npz", resumed)
    resumed.fit(x, y, epochs=2, batch_size=8, verbose=0, initial_epoch=epoch)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_first_layers_skip_their_input_gradient_in_a_graph(rng):
    """Training asks for no dL/dx: both convolutions reading the input skip it, the result is the same."""
    model = concatenating_model()
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    dy = rng.standard_normal((2, 2)).astype(np.float32)
    model.forward(x)
    model.backward(dy, input_gradient=True)
    full = [g.copy() for g in model.gradients()]
    model.forward(x)
    assert model.backward(dy, input_gradient=False) is None
    for a, b in zip(full, model.gradients()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.errors
def test_clear_errors_when_building_graphs():
    a, b = Input((4, 4, 2)), Input((4, 4, 3))
    with pytest.raises(ValueError, match="add.*same shape"):
        Add()([Conv2D(2, 1)(a), Conv2D(3, 1)(a)])
    with pytest.raises(ValueError, match="concatenate.*agree"):
        Concatenate(axis=-1)([a, MaxPooling2D()(a)])
    with pytest.raises(ValueError, match="batch axis"):
        Concatenate(axis=0)
    with pytest.raises(TypeError, match="axis must be an integer"):
        Concatenate(axis=1.5)
    with pytest.raises(TypeError, match="list of at least two"):
        Add()(a)
    with pytest.raises(TypeError, match="only merge layers"):
        Dense(2)([a, a])
    with pytest.raises(ValueError, match="not the given inputs"):
        Model(a, Concatenate()([a, b]))
    with pytest.raises(TypeError, match="must come from Input"):
        Model(Conv2D(1, 1)(a), Conv2D(1, 1)(Conv2D(1, 1)(a)))
    add = Add()
    with pytest.raises(ValueError, match="same shape"):
        add.forward([np.zeros((1, 2), np.float32), np.zeros((1, 3), np.float32)])
    add.forward([np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32)])  # builds it for (2,)
    with pytest.raises(ValueError, match="expected input of shape"):
        add.forward([np.zeros((1, 2), np.float32), np.zeros((1, 3), np.float32)])
    with pytest.raises(ValueError, match="batch sizes differ"):
        add.forward([np.zeros((1, 2), np.float32), np.zeros((2, 2), np.float32)])


def test_graphs_run_on_every_device(device, rng):
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    dy = rng.standard_normal((3, 2)).astype(np.float32)
    results = []
    for where in ("cpu", device):
        tinyconv.set_device(where)
        tinyconv.set_seed(0)
        model = concatenating_model()
        y = model.forward(x)
        dx = model.backward(tinyconv.to_device(dy))
        results.append([tinyconv.to_numpy(a) for a in (y, dx, *model.gradients())])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_add_of_three_branches_sums_all_three_and_sends_the_gradient_to_each(rng):
    """Every other merge test adds two tensors: an Add that dropped its third input passed them."""
    a, b, c = (rng.standard_normal((2, 4, 4, 3)).astype(np.float32) for _ in range(3))
    layer = Add()
    layer.build([(4, 4, 3)] * 3)
    np.testing.assert_allclose(layer.forward([a, b, c]), a + b + c, rtol=1e-6)
    dy = rng.standard_normal(a.shape).astype(np.float32)
    grads = layer.backward(dy)
    assert len(grads) == 3 and all(np.array_equal(g, dy) for g in grads)
    inputs = [Input((4, 4, 3)) for _ in range(1)]
    x = inputs[0]
    model = Model(x, Add()([Conv2D(2, 1)(x), Conv2D(2, 1)(x), Conv2D(2, 1)(x)]))
    branches = [layer for layer in model.layers if isinstance(layer, Conv2D)]
    out = model.forward(a)
    expected = sum(branch.forward(a) for branch in branches)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
