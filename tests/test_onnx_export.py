"""ONNX export, run in ONNX Runtime (the reference; skipped without the onnx extra and onnxruntime)."""
import numpy as np
import pytest

from tinyconv import Model, Sequential
from tinyconv import layers as L
from tinyconv.zoo import seed_cnn

pytestmark = pytest.mark.model
onnx = pytest.importorskip("onnx", reason="needs the onnx extra (pip install -e '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime, the tests' reference (pip install onnxruntime)")


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def with_trained_statistics(model, x):
    """A few training steps, so BatchNorm's moving statistics and every weight are not their defaults."""
    model.compile("adam", "binary_crossentropy" if model.output_shape[-1] != 3 else "categorical_crossentropy")
    y = np.eye(model.output_shape[-1], dtype=np.float32)[np.arange(len(x)) % model.output_shape[-1]]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    return model


def test_the_seed_cnn_runs_in_onnx_runtime_with_the_same_outputs(tmp_path, rng):
    model = seed_cnn((32, 32, 3))
    x = rng.standard_normal((5, 32, 32, 3)).astype(np.float32)
    model.export(tmp_path / "seed.onnx", format="onnx")
    proto = onnx.load(tmp_path / "seed.onnx")
    assert proto.ir_version == 8 and proto.opset_import[0].version == 17
    np.testing.assert_allclose(run_onnx(tmp_path / "seed.onnx", x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_a_graph_with_batchnorm_add_concatenate_and_every_layer(tmp_path, rng):
    inputs = L.Input((8, 8, 2))
    a = L.Conv2D(4, 3, strides=(2, 1), padding="same", activation="relu")(L.Rescaling(2.0, offset=-0.5)(inputs))
    b = L.LeakyReLU()(L.BatchNormalization()(a))
    c = L.Concatenate()([L.Add()([a, b, a]), L.Conv2D(2, 1)(L.MaxPooling2D((1, 1), strides=(2, 1))(inputs))])
    d = L.AveragePooling2D((3, 3), strides=(2, 2), padding="same")(c)
    up = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh")(d)
    thin = L.Conv2DTranspose(2, 1, strides=2)(d)  # kernel < stride: rows of bias alone
    e = L.UpSampling2D((2, 1))(L.Activation("sigmoid")(up))
    f = L.Softmax()(L.Reshape((8, -1))(e))
    pooled = L.GlobalAveragePooling2D()(L.ReLU()(thin))
    g = L.Dense(4, activation="sigmoid")(L.Dropout(0.5)(L.Flatten()(f)))
    model = Model(inputs, L.Dense(3, activation="softmax")(L.Concatenate()([g, pooled])))
    x = rng.standard_normal((6, 8, 8, 2)).astype(np.float32)
    with_trained_statistics(model, x)
    model.export(tmp_path / "graph.onnx")
    np.testing.assert_allclose(run_onnx(tmp_path / "graph.onnx", x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_a_sequential_with_normalization_on_vectors(tmp_path, rng):
    x = rng.standard_normal((7, 5)).astype(np.float32) * 3 + 1
    normalize = L.Normalization()
    normalize.adapt(x)
    model = Sequential([L.Input((5,)), normalize, L.Dense(4, activation="relu"), L.Dense(1)])
    model.export(tmp_path / "v.onnx")
    np.testing.assert_allclose(run_onnx(tmp_path / "v.onnx", x), model.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.errors
def test_export_refusals(tmp_path):
    class Mine(L.Layer):
        def forward(self, x, training=False):
            return x

        def backward(self, dy):
            return dy
    model = Sequential([L.Input((4,)), Mine()])
    with pytest.raises(ValueError, match=r"layer 'mine' \(Mine\): no ONNX translation"):
        model.export(tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="format='tf_saved_model': tinyconv exports 'onnx'"):
        model.export(tmp_path / "d", format="tf_saved_model")
    assert list(tmp_path.iterdir()) == []
