"""Feature maps: the recorded outputs equal the layers run by hand, and the plot is written."""
import numpy as np
import pytest

from tinyconv import Sequential
from tinyconv.diagnostics.feature_maps import default_layers, feature_maps
from tinyconv.layers import Conv2D, Dense, Flatten, LeakyReLU, MaxPooling2D
from tinyconv.diagnostics.plots import plot_feature_maps

pytestmark = pytest.mark.model


def small_cnn():
    return Sequential([Conv2D(4, 3, padding="same", input_shape=(8, 8, 3)), LeakyReLU(),
                       Conv2D(5, 3, activation="relu"), MaxPooling2D(), Flatten(), Dense(2, activation="sigmoid")])


def test_feature_maps_equal_the_layers_run_one_by_one(rng):
    model = small_cnn()
    image = rng.standard_normal((8, 8, 3)).astype(np.float32)
    maps = feature_maps(model, image)
    conv, leaky, conv_relu, pool = model.layers[0:4]  # a Sequential lists no InputLayer, as in Keras
    assert list(maps) == [leaky.name, conv_relu.name, pool.name]   # the conv without activation is skipped
    x = image[None]
    expected = {}
    for layer in (conv, leaky, conv_relu, pool):
        x = layer.forward(x)
        expected[layer.name] = x[0]
    for name, fmap in maps.items():
        np.testing.assert_array_equal(fmap, expected[name])
    assert maps[pool.name].shape == (3, 3, 5)
    assert all("forward" not in vars(layer) for layer in model.layers)   # the recorders are gone


def test_feature_maps_of_chosen_layers_and_bad_input(rng):
    model = small_cnn()
    conv = model.layers[0]
    image = rng.standard_normal((8, 8, 3)).astype(np.float32)
    maps = feature_maps(model, image, layers=[conv])
    assert list(maps) == [conv.name] and maps[conv.name].shape == (8, 8, 4)
    with pytest.raises(ValueError, match=r"feature_maps: expected one image of shape \(8, 8, 3\)"):
        feature_maps(model, image[None])
    with pytest.raises(ValueError, match="not an image-shaped layer"):
        feature_maps(model, image, layers=[model.layers[-1]])
    assert all("forward" not in vars(layer) for layer in model.layers)
    assert conv not in default_layers(model)


def test_plot_feature_maps_writes_a_png(rng, tmp_path):
    model = small_cnn()
    image = rng.random((8, 8, 3)).astype(np.float32)
    path = plot_feature_maps(image, feature_maps(model, image), tmp_path / "maps.png", channels=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="must be \\(OH, OW, C\\)"):
        plot_feature_maps(image, {"dense": np.zeros(3)}, tmp_path / "bad.png")
