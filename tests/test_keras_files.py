"""Whole models (.keras) and weights (.weights.h5) in Keras 3's formats: read back by tinyconv, by Keras 3
itself (the reference; skipped without it), and refused clearly when they cannot be."""
import os
import zipfile

import numpy as np
import pytest

import tinyconv
from tinyconv import Model, Sequential
from tinyconv import layers as L
from tinyconv.callbacks import ModelCheckpoint
from tinyconv.models import load_model
from tinyconv.optimizers import SGD, Adam

pytestmark = pytest.mark.model


def keras3():
    """Keras 3 on its PyTorch backend (both CPU-only test extras), or a skip that says what is missing."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        pytest.skip(f"needs Keras 3 with a CPU backend (pip install keras torch): {exc}")
    if not keras.__version__.startswith("3."):
        pytest.skip(f"needs Keras 3, found {keras.__version__}")
    return keras


def graph_model():
    """Every layer kind of the Keras set in one functional graph."""
    inputs = L.Input((8, 8, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu", kernel_regularizer=tinyconv.regularizers.l2(1e-3))(inputs)
    b = L.LeakyReLU(negative_slope=0.1)(L.BatchNormalization()(a))
    c = L.Concatenate()([L.Add()([a, b]), inputs])
    d = L.AveragePooling2D(padding="same", strides=(2, 1))(L.MaxPooling2D()(c))
    up = L.Conv2DTranspose(2, 3, strides=2, padding="same", activation="tanh")(d)
    e = L.ReLU()(L.UpSampling2D()(L.Activation("sigmoid")(up)))
    f = L.Softmax()(L.Reshape((16, -1))(e))
    g = L.Dense(4, activation="sigmoid")(L.Dropout(0.25)(L.Flatten()(f)))
    pooled = L.GlobalAveragePooling2D()(c)
    return Model(inputs, L.Dense(3, activation="softmax")(L.Concatenate()([g, pooled])))


def data(rng, n=12):
    x = rng.standard_normal((n, 8, 8, 2)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def trained(rng):
    model = graph_model()
    model.compile(Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    x, y = data(rng)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    return model, x, y


def test_a_saved_model_comes_back_whole_and_trains_on_identically(tmp_path, rng):
    model, x, y = trained(rng)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert type(loaded.optimizer).__name__ == "Adam" and loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.metrics_names == ["loss", "accuracy"] and loaded.count_params() == model.count_params()
    tinyconv.set_seed(5)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    tinyconv.set_seed(5)
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)  # the optimizer's moments travelled too


def test_keras_3_loads_a_tinyconv_model_and_predicts_the_same(tmp_path, rng):
    keras = keras3()
    model, x, _ = trained(rng)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x), rtol=1e-5, atol=1e-6)
    assert theirs.count_params() == model.count_params()
    assert int(theirs.optimizer.iterations) == model.optimizer.iterations


def test_tinyconv_loads_a_keras_3_model_and_predicts_the_same(tmp_path, rng):
    keras = keras3()
    K = keras.layers
    inputs = keras.Input((8, 8, 2))
    x1 = K.Conv2D(4, 3, padding="same")(inputs)
    x1 = K.LeakyReLU()(K.BatchNormalization()(x1))
    x2 = K.Add()([x1, K.Conv2D(4, 1)(inputs)])
    x3 = K.AveragePooling2D(2)(K.MaxPooling2D(pool_size=1)(x2))
    outputs = K.Dense(3, activation="softmax")(K.Dropout(0.2)(K.Flatten()(K.Concatenate()([x3, x3]))))
    theirs = keras.Model(inputs, outputs)
    theirs.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    x, y = data(rng)
    theirs.fit(x, y, epochs=2, batch_size=4, verbose=0)
    theirs.save(tmp_path / "k.keras")
    mine = load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(mine.predict(x), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert mine.optimizer.iterations == int(theirs.optimizer.iterations) == 6
    sequential = keras.Sequential([keras.Input((5,)), K.Dense(4, activation="relu"), K.Dense(1, activation="sigmoid")])
    sequential.compile("sgd", "binary_crossentropy")
    sequential.save(tmp_path / "s.keras")
    xs = rng.standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(load_model(tmp_path / "s.keras").predict(xs), sequential.predict(xs, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_weights_files_in_keras_layout_both_ways(tmp_path, rng):
    keras = keras3()
    model, x, _ = trained(rng)
    model.save_weights(tmp_path / "w.weights.h5")
    copy = graph_model()
    copy.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    theirs.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x), rtol=1e-5, atol=1e-6)
    for w in theirs.weights:
        w.assign(np.zeros(w.shape, dtype=w.dtype) + 0.01)
    theirs.save_weights(tmp_path / "k.weights.h5")
    copy.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(copy.predict(x), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_sequential_round_trip_with_sgd_momentum(tmp_path, rng):
    model = Sequential([L.Conv2D(2, 3, input_shape=(6, 6, 1)), L.Flatten(), L.Dense(2, activation="sigmoid")])
    model.compile(SGD(0.1, momentum=0.9), "binary_crossentropy")
    x = rng.standard_normal((8, 6, 6, 1)).astype(np.float32)
    y = (rng.random((8, 2)) > 0.5).astype(np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "s.keras")
    loaded = load_model(tmp_path / "s.keras")
    assert type(loaded).__name__ == "Sequential" and loaded.optimizer.momentum == 0.9
    for a, b in zip(loaded.optimizer.slots["velocity"], model.optimizer.slots["velocity"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.errors
def test_what_cannot_travel_is_refused_naming_it(tmp_path, rng):
    class Mine(L.Layer):
        def forward(self, x, training=False):
            return x

        def backward(self, dy):
            return dy
    inputs = L.Input((4,))
    odd = Model(inputs, Mine()(inputs))
    with pytest.raises(ValueError, match=r"layer 'mine' \(Mine\): Keras has no layer of this kind"):
        odd.save(tmp_path / "odd.keras")
    assert not (tmp_path / "odd.keras").exists()
    model, x, _ = trained(rng)
    with pytest.raises(ValueError, match=r"save: .*m\.h5: a whole model is saved as a \.keras file"):
        model.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"Keras 3 names its HDF5 weights files '\*\.weights\.h5'"):
        model.save_weights(tmp_path / "w.h5")
    model.save(tmp_path / "m.keras")
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save(tmp_path / "m.keras", overwrite=False)
    archive = zipfile.ZipFile(tmp_path / "m.keras")
    config = archive.read("config.json").decode().replace('"class_name": "MaxPooling2D"', '"class_name": "Conv3D"')
    with zipfile.ZipFile(tmp_path / "foreign.keras", "w") as out:
        out.writestr("config.json", config)
        out.writestr("model.weights.h5", archive.read("model.weights.h5"))
    with pytest.raises(ValueError, match=r"layer 'max_pooling2d' \(Conv3D\): tinyconv has no layer of this kind"):
        load_model(tmp_path / "foreign.keras")
    dilated = archive.read("config.json").decode().replace('"dilation_rate": [1, 1]', '"dilation_rate": [2, 2]', 1)
    with zipfile.ZipFile(tmp_path / "dilated.keras", "w") as out:
        out.writestr("config.json", dilated)
        out.writestr("model.weights.h5", archive.read("model.weights.h5"))
    with pytest.raises(ValueError, match=r"'conv2d' \(Conv2D\): Keras's dilation_rate=\[2, 2\] has no tinyconv"):
        load_model(tmp_path / "dilated.keras")
    (tmp_path / "cut.keras").write_bytes((tmp_path / "m.keras").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.keras: not a readable \.keras archive"):
        load_model(tmp_path / "cut.keras")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "none.keras")
    other = Sequential([L.Input((8, 8, 2)), L.Flatten(), L.Dense(3)])
    before = [w.copy() for w in other.get_weights()]
    model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match=r"layer 'dense.*' \(Dense\) expects weights of shapes"):
        other.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_follows_the_file_name_as_keras_3(tmp_path, rng):
    model, x, y = trained(rng)
    callbacks = [ModelCheckpoint(tmp_path / "m-{epoch}.keras", monitor="loss"),
                 ModelCheckpoint(tmp_path / "w-{epoch}.weights.h5", monitor="loss", save_weights_only=True),
                 ModelCheckpoint(tmp_path / "w-{epoch}.npz", monitor="loss")]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=callbacks)
    np.testing.assert_array_equal(load_model(tmp_path / "m-1.keras").predict(x), model.predict(x))
    for name in ("w-1.weights.h5", "w-1.npz"):
        copy = graph_model()
        copy.load_weights(tmp_path / name)
        np.testing.assert_array_equal(copy.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="Keras 2's .h5 files are not written"):
        ModelCheckpoint(tmp_path / "w.h5")
    with pytest.raises(ValueError, match="save_weights_only=True"):
        ModelCheckpoint(tmp_path / "m.keras", save_weights_only=True)


def test_preprocessing_layers_travel_both_ways(tmp_path, rng):
    keras = keras3()
    x = (rng.random((6, 5, 5, 3)) * 255).astype(np.float32)
    inputs = L.Input((5, 5, 3))
    adapted = L.Normalization()
    adapted.adapt(x / 255)
    scaled = L.Rescaling(1 / 255)(inputs)
    outputs = L.Dense(2)(L.Flatten()(L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.1, 0.2, 0.3])(adapted(scaled))))
    model = Model(inputs, outputs)
    model.save(tmp_path / "p.keras")
    theirs = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(load_model(tmp_path / "p.keras").predict(x), model.predict(x), rtol=1e-6)
    K = keras.layers
    norm = K.Normalization()
    norm.adapt(x)
    kmodel = keras.Sequential([keras.Input((5, 5, 3)), norm, K.Rescaling(0.5, offset=1.0), K.Flatten(), K.Dense(1)])
    kmodel.save(tmp_path / "k.keras")
    np.testing.assert_allclose(load_model(tmp_path / "k.keras").predict(x), kmodel.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_the_seed_cnn_written_by_keras_3_predicts_the_same_here(tmp_path, rng):
    keras = keras3()
    K = keras.layers
    inputs = keras.Input(shape=(32, 32, 3))
    x = inputs
    for filters in (64, 64, None, 128, 128, None):
        x = K.MaxPooling2D((2, 2))(x) if filters is None else K.LeakyReLU()(K.Conv2D(filters, (3, 3), padding="same")(x))
    x = K.Dropout(0.5)(K.LeakyReLU()(K.Dense(128)(K.Flatten()(x))))
    theirs = keras.Model(inputs, K.Dense(18, activation="sigmoid")(x))
    theirs.compile(keras.optimizers.Adam(learning_rate=0.001), "binary_crossentropy", metrics=["accuracy"])
    theirs.save(tmp_path / "seed.keras")
    mine = load_model(tmp_path / "seed.keras")
    images = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
    assert mine.count_params() == 1_311_186
    np.testing.assert_allclose(mine.predict(images), theirs.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
