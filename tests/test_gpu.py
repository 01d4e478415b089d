"""The GPU backend: CUDA kernels against the reference ones, CPU/GPU parity, devices and checkpoints.

Tests marked ``gpu`` need CuPy and a visible NVIDIA GPU and skip cleanly otherwise (CI has none).
The others run everywhere: the launch arithmetic for element counts past 2**31, the kernel
dispatch coverage of ``kernels/gpu.py``, and the error that ``set_device("gpu")`` gives when CuPy
or a GPU is missing.
"""
import functools
import inspect
import subprocess
import sys
import types

import numpy as np
import pytest

import tinyconv
from tinyconv import backend, gradcheck, kernels, zoo
from tinyconv.checkpoint import load_checkpoint, save_checkpoint
from tinyconv.kernels import gpu, reference
from tinyconv.layers import (Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D,
                             reset_names)
from tinyconv.model import Model
from tinyconv.optimizers import SGD, Adam

RTOL = 1e-4  # CPU vs GPU in float32: BLAS libraries sum in different orders


@pytest.fixture
def cp():
    """CuPy; skips the test without CuPy or without a GPU that CuPy can see."""
    cupy = pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("needs an NVIDIA GPU visible to CuPy")
    return cupy


def assert_close(actual, expected, rtol=RTOL):
    """Element-wise within ``rtol``, with an absolute floor of ``rtol`` times the largest |expected|
    (elements near zero carry the summation-order noise of the larger ones)."""
    expected = backend.to_numpy(expected)
    np.testing.assert_allclose(backend.to_numpy(actual), expected, rtol=rtol,
                               atol=rtol * float(np.abs(expected).max(initial=0.0)))


# --- kernels: GPU equals reference ----------------------------------------------------------------

# (x shape, window, strides, padding (top, bottom, left, right)); padding as Conv2D/MaxPooling2D
# compute it for "valid" (zeros) and "same" (extra on the bottom/right when odd), plus asymmetric.
WINDOW_CASES = [
    ((2, 7, 7, 3), (3, 3), (1, 1), (1, 1, 1, 1)),    # same, square
    ((2, 7, 7, 3), (3, 3), (1, 1), (0, 0, 0, 0)),    # valid
    ((1, 9, 6, 1), (2, 3), (2, 1), (0, 1, 1, 1)),    # batch 1, C=1, non-square window, same, odd pad
    ((3, 8, 11, 2), (3, 2), (3, 2), (1, 1, 0, 1)),   # strides 3 and 2, odd width
    ((2, 5, 5, 4), (2, 2), (2, 2), (0, 0, 0, 0)),    # the 2x2 pooling of the seed model
    ((2, 6, 9, 3), (3, 3), (2, 3), (0, 1, 0, 0)),    # stride 3 along W, windows that overlap along H
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),    # the smallest batch
    ((2, 4, 4, 2), (3, 3), (1, 1), (2, 2, 2, 2)),    # padding as wide as the window: all-padding windows
    ((2, 10, 3, 5), (5, 1), (1, 3), (2, 2, 0, 0)),   # tall window, one column
]
DTYPES = [np.float32, np.float64]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, strides, pads", WINDOW_CASES)
def test_im2col_and_col2im_match_reference(cp, shape, window, strides, pads, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    cols = gpu.im2col(cp.asarray(x), window, strides, pads)
    assert isinstance(cols, cp.ndarray) and cols.dtype == dtype
    np.testing.assert_array_equal(cols.get(), reference.im2col(x, window, strides, pads))
    upstream = rng.standard_normal(cols.shape).astype(dtype)
    dx = gpu.col2im(cp.asarray(upstream), x.shape, window, strides, pads)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_allclose(dx.get(), reference.col2im(upstream, x.shape, window, strides, pads),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, strides, pads", WINDOW_CASES)
@pytest.mark.parametrize("values", ["random", "negative", "ties"])
def test_maxpool_matches_reference(cp, shape, window, strides, pads, dtype, values):
    """Negative inputs catch padding that would win as 0; small integers make ties (first one wins)."""
    rng = np.random.default_rng(1)
    x = {"random": rng.standard_normal(shape),
         "negative": -1 - rng.random(shape),
         "ties": rng.integers(0, 3, shape)}[values].astype(dtype)
    y, argmax = gpu.maxpool_forward(cp.asarray(x), window, strides, pads)
    y_ref, argmax_ref = reference.maxpool_forward(x, window, strides, pads)
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(y.get(), y_ref)
    np.testing.assert_array_equal(argmax.get(), argmax_ref)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx = gpu.maxpool_backward(cp.asarray(dy), argmax, x.shape, window, strides, pads)
    np.testing.assert_allclose(dx.get(), reference.maxpool_backward(dy, argmax_ref, x.shape, window, strides, pads),
                               rtol=1e-6, atol=1e-6)


def random_transforms(rng, n, h, w, reach):
    """Rotations, shears, zooms and shifts of up to ``reach`` times the image size (far outside)."""
    theta = rng.uniform(-np.pi, np.pi, n)
    t = np.zeros((n, 2, 3))
    t[:, 0, 0] = np.cos(theta) * rng.uniform(0.5, 1.5, n)
    t[:, 0, 1] = -np.sin(theta) + rng.uniform(-0.3, 0.3, n)
    t[:, 1, 0] = np.sin(theta)
    t[:, 1, 1] = np.cos(theta) * rng.uniform(0.5, 1.5, n)
    t[:, :, 2] = rng.uniform(-reach, reach, (n, 2)) * [h, w]
    return t


@pytest.mark.gpu
@pytest.mark.parametrize("fill_mode", reference.FILL_MODES)
@pytest.mark.parametrize("shape", [(3, 9, 7, 3), (1, 1, 5, 1), (2, 6, 6, 2)])
@pytest.mark.parametrize("reach", [0.0, 0.5, 3.0])
def test_affine_warp_matches_reference(cp, fill_mode, shape, reach):
    rng = np.random.default_rng(2)
    images = rng.random(shape).astype(np.float32)
    transforms = random_transforms(rng, shape[0], shape[1], shape[2], reach)
    out = gpu.affine_warp(cp.asarray(images), transforms, fill_mode, cval=0.25)
    assert isinstance(out, cp.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out.get(), reference.affine_warp(images, transforms, fill_mode, cval=0.25),
                               rtol=0, atol=1e-6)


@pytest.mark.gpu
def test_kernels_dispatch_device_arrays_to_the_gpu_module(cp):
    x = cp.asarray(np.random.default_rng(3).standard_normal((2, 5, 5, 3)).astype(np.float32))
    assert kernels.module_for(x) is gpu
    with kernels.reference_kernels():  # the reference switch is for host arrays only
        assert kernels.module_for(x) is gpu
    y, _ = kernels.maxpool_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    assert isinstance(y, cp.ndarray)


@pytest.mark.gpu
def test_unsupported_dtype_is_a_clear_error(cp):
    with pytest.raises(TypeError, match="float32 or float64"):
        gpu.im2col(cp.zeros((1, 3, 3, 1), dtype=cp.float16), (2, 2), (1, 1), (0, 0, 0, 0))


# --- 64-bit indices --------------------------------------------------------------------------------

def test_launch_config_bounds_the_grid_past_2_to_the_31():
    """The flat index reaches 2**31 and more at batch 256 of big images; the grid must stay valid
    and the kernels must get the element count as a 64-bit integer."""
    assert gpu.launch_config(1) == (1, gpu.THREADS_PER_BLOCK)
    assert gpu.launch_config(1000) == (4, gpu.THREADS_PER_BLOCK)
    total = 3 * 2**31 + 5
    blocks, threads = gpu.launch_config(total)
    assert 1 <= blocks <= gpu.MAX_BLOCKS <= 2**31 - 1 and threads <= 1024
    args = gpu.kernel_args(total, 7, 2.5)
    assert [type(a) for a in args] == [np.int64, np.int64, np.float64]
    assert int(args[0]) == total


@pytest.mark.gpu
@pytest.mark.slow
def test_im2col_and_col2im_past_2_to_the_31_elements(cp):
    """im2col output with 2.4e9 elements (9.7 GB in float32): the last image's rows, whose flat
    indices all pass 2**31, equal the im2col of that image alone (small indices, tested above)."""
    n, h, w, c = 8, 128, 128, 2048
    window, strides, pads = (3, 3), (1, 1), (1, 1, 1, 1)
    assert n * h * w * 9 * c > 2**31
    free_bytes, _ = cp.cuda.Device().mem_info
    if free_bytes < 16 * 2**30:
        pytest.skip("needs 16 GiB of free GPU memory")
    x = cp.random.default_rng(0).standard_normal((n, h, w, c), dtype=cp.float32)
    cols = gpu.im2col(x, window, strides, pads)
    rows = h * w
    last = gpu.im2col(x[-1:], window, strides, pads)
    assert bool((cols[-rows:] == last).all())
    dx = gpu.col2im(cols, x.shape, window, strides, pads)
    del cols
    assert bool((dx[-1:] == gpu.col2im(last, x[-1:].shape, window, strides, pads)).all())


# --- dispatch coverage (runs without CuPy) ---------------------------------------------------------

def dispatched_kernels():
    """The kernel functions that ``tinyconv.kernels`` routes through ``module_for``."""
    return [name for name, f in vars(kernels).items()
            if inspect.isfunction(f) and f.__module__ == kernels.__name__ and name != "module_for"
            and "module_for(" in inspect.getsource(f)]


def test_gpu_module_covers_every_dispatched_kernel():
    names = dispatched_kernels()
    assert {"im2col", "col2im", "maxpool_forward", "maxpool_backward", "affine_warp"} <= set(names)
    # The Winograd transforms are optional: where kernels.has_winograd is False, Conv2D uses im2col.
    for name in (n for n in names if "winograd" not in n):
        assert hasattr(gpu, name), f"kernels.{name} has no GPU version in kernels/gpu.py"
        assert (list(inspect.signature(getattr(gpu, name)).parameters)
                == list(inspect.signature(getattr(reference, name)).parameters)), name


def test_gpu_module_imports_without_cupy():
    # A fresh interpreter, where a None entry in sys.modules makes "import cupy" fail.
    code = "import sys; sys.modules['cupy'] = None; import tinyconv.kernels.gpu"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- set_device("gpu") without CuPy or a GPU (runs without CuPy) -----------------------------------

def test_gpu_request_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError) as error:
        tinyconv.set_device("gpu")
    message = str(error.value)
    assert "\n" not in message and "CuPy" in message
    assert 'pip install -e ".[gpu]"' in message and "cupy-cuda12x" in message and "cupy-cuda13x" in message
    assert tinyconv.get_device() == "cpu"
    assert backend.gpu_available() is False


@pytest.mark.parametrize("device_count", [0, RuntimeError("cudaErrorNoDevice: no CUDA-capable device")])
def test_gpu_request_without_a_gpu_says_what_to_install(monkeypatch, device_count):
    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=get_device_count)))
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(RuntimeError) as error:
        tinyconv.set_device("gpu")
    message = str(error.value)
    assert "\n" not in message and "no CUDA GPU" in message and "NVIDIA driver" in message
    assert "cupy-cuda12x" in message
    assert tinyconv.get_device() == "cpu"


# --- the seed model: CPU vs GPU parity -------------------------------------------------------------

def build_on(device, build, weights=None):
    """``build()`` on ``device`` with fresh layer names, then ``weights`` (host arrays) if given.

    Every Conv2D uses im2col, as on the GPU: these tests compare backends, not algorithms (the CPU's
    Winograd layers round differently; tests/test_conv.py holds them to im2col).
    """
    tinyconv.set_device(device)
    reset_names()
    model = build()
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            layer.algorithm = "im2col"
    if weights is not None:
        model.set_weights(weights)
    return model


def run_forward_backward(model, x, dy):
    """Forward with dropout on (mask fixed by the seed) and backward: output, dL/dx and every grad."""
    tinyconv.set_seed(7)
    y = model.forward(x, training=True)
    dx = model.backward(backend.to_device(dy))
    return y, dx, model.gradients()


@pytest.mark.gpu
def test_seed_model_forward_and_gradients_match_cpu(cp):
    rng = np.random.default_rng(4)
    x = rng.random((8, 32, 32, 3)).astype(np.float32)
    cpu_model = build_on("cpu", zoo.seed_cnn)
    gpu_model = build_on("gpu", zoo.seed_cnn, cpu_model.get_weights())
    assert all(isinstance(p, cp.ndarray) for p in gpu_model.trainable_params())
    dy = rng.standard_normal((8, 18)).astype(np.float32)
    tinyconv.set_device("cpu")
    y_cpu, dx_cpu, grads_cpu = run_forward_backward(cpu_model, x, dy)
    tinyconv.set_device("gpu")
    y_gpu, dx_gpu, grads_gpu = run_forward_backward(gpu_model, x, dy)
    assert isinstance(y_gpu, cp.ndarray) and isinstance(dx_gpu, cp.ndarray)
    assert_close(y_gpu, y_cpu)
    assert_close(dx_gpu, dx_cpu)
    assert len(grads_gpu) == len(grads_cpu) == 12
    for g_gpu, g_cpu in zip(grads_gpu, grads_cpu):
        assert isinstance(g_gpu, cp.ndarray) and g_gpu.dtype == np.float32
        assert_close(g_gpu, g_cpu)


@pytest.mark.gpu
def test_seed_model_training_step_matches_cpu(cp):
    """One SGD step gives the same loss and the same update (SGD is linear in the gradients; Adam's
    near-sign update would magnify float32 noise in gradients close to 0)."""
    rng = np.random.default_rng(5)
    x = rng.random((8, 48, 48, 3)).astype(np.float32)
    y = rng.integers(0, 2, (8, 18)).astype(np.float32)
    build = functools.partial(zoo.seed_cnn, input_shape=(48, 48, 3))
    cpu_model = build_on("cpu", build)
    before = cpu_model.get_weights()
    gpu_model = build_on("gpu", build, before)
    losses = []
    for device, model in (("cpu", cpu_model), ("gpu", gpu_model)):
        tinyconv.set_device(device)
        model.compile(SGD(learning_rate=0.1), "binary_crossentropy")
        tinyconv.set_seed(8)
        loss, _ = model.train_step(x, y)
        assert isinstance(loss, float)
        losses.append(loss)
    assert losses[1] == pytest.approx(losses[0], rel=RTOL)
    assert all(isinstance(p, cp.ndarray) for p in gpu_model.trainable_params())
    assert all(isinstance(v, cp.ndarray) for v in gpu_model.optimizer.slots["velocity"])
    for w_gpu, w_cpu, w in zip(gpu_model.get_weights(), cpu_model.get_weights(), before):
        assert_close(w_gpu - w, w_cpu - w)


@pytest.mark.gpu
def test_adam_update_matches_cpu(cp):
    """Given the same gradients, Adam's update on the device equals the host one (state stays on the device)."""
    rng = np.random.default_rng(6)
    params = [rng.standard_normal((3, 3, 2, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    on_cpu, on_gpu = [p.copy() for p in params], [cp.asarray(p) for p in params]
    adam_cpu, adam_gpu = Adam(), Adam()
    for _ in range(3):
        adam_cpu.step(on_cpu, grads)
        adam_gpu.step(on_gpu, [cp.asarray(g) for g in grads])
    assert all(isinstance(m, cp.ndarray) for m in adam_gpu.slots["m"] + adam_gpu.slots["v"])
    for p_gpu, p_cpu in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(p_gpu.get(), p_cpu, rtol=1e-6, atol=1e-7)


# --- gradient checks on the GPU (float64) ----------------------------------------------------------

def small_model(dropout: float = 0.3) -> Model:
    """Every layer type, odd sizes, a strided non-square conv with "same" padding, overlapping pools."""
    inputs = Input(shape=(7, 6, 2))
    x = Conv2D(3, (3, 2), strides=(2, 1), padding="same")(inputs)
    x = LeakyReLU()(x)
    x = MaxPooling2D((2, 2), strides=(1, 1), padding="same")(x)
    x = Conv2D(2, (2, 2), padding="valid", activation="relu")(x)
    x = Flatten()(x)
    x = Dense(5)(x)
    x = Dropout(dropout)(x)
    outputs = Dense(3, activation="sigmoid")(x)
    return Model(inputs, outputs)


@pytest.mark.gpu
@pytest.mark.gradcheck
def test_gradcheck_on_the_gpu_in_float64(cp):
    tinyconv.set_floatx("float64")
    model = build_on("gpu", small_model)
    assert all(isinstance(p, cp.ndarray) and p.dtype == np.float64 for p in model.trainable_params())
    x = np.random.default_rng(9).standard_normal((2, 7, 6, 2))
    report = gradcheck.check_model(model, x, training=True, max_checks=40)
    assert report.passed(1e-6), str(report)
    # Few kinks: a check that called most entries kinks (as CuPy's 0-d views once made it) proves nothing.
    assert report.kinks <= 3, str(report)


# --- devices: checkpoints, predict, fit ------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("saved_on, loaded_on", [("gpu", "cpu"), ("cpu", "gpu")])
def test_weights_saved_on_one_device_load_on_the_other(cp, tmp_path, saved_on, loaded_on):
    x = np.random.default_rng(10).standard_normal((4, 7, 6, 2)).astype(np.float32)
    saved = build_on(saved_on, small_model)
    saved.save_weights(tmp_path / "weights.npz")
    expected = saved.predict(x)
    tinyconv.set_seed(11)  # different initial weights, overwritten by the load
    loaded = build_on(loaded_on, small_model)
    loaded.load_weights(tmp_path / "weights.npz")
    assert all(backend.is_gpu_array(p) == (loaded_on == "gpu") for p in loaded.trainable_params())
    for a, b in zip(loaded.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert_close(loaded.predict(x), expected)


@pytest.mark.gpu
@pytest.mark.parametrize("saved_on, loaded_on", [("gpu", "cpu"), ("cpu", "gpu")])
def test_training_checkpoint_moves_between_devices(cp, tmp_path, saved_on, loaded_on):
    """Weights and Adam's moments saved on one device resume on the other."""
    rng = np.random.default_rng(12)
    x, y = rng.random((16, 7, 6, 2)).astype(np.float32), rng.integers(0, 2, (16, 3)).astype(np.float32)
    saved = build_on(saved_on, small_model)
    saved.compile(Adam(), "binary_crossentropy")
    saved.fit(x, y, batch_size=8, epochs=1, verbose=0)
    save_checkpoint(tmp_path / "run.npz", saved, epoch=1)
    loaded = build_on(loaded_on, small_model)
    loaded.compile(Adam(), "binary_crossentropy")
    assert load_checkpoint(tmp_path / "run.npz", loaded) == 1
    assert loaded.optimizer.iterations == saved.optimizer.iterations == 2
    for name in ("m", "v"):
        for a, b in zip(loaded.optimizer.slots[name], saved.optimizer.slots[name]):
            assert backend.is_gpu_array(a) == (loaded_on == "gpu")
            np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))


@pytest.mark.gpu
def test_predict_and_evaluate_return_host_values(cp):
    rng = np.random.default_rng(13)
    x, y = rng.random((10, 7, 6, 2)).astype(np.float32), rng.integers(0, 2, (10, 3)).astype(np.float32)
    model = build_on("gpu", small_model)
    model.compile(Adam(), "binary_crossentropy", metrics=["accuracy"])
    predictions = model.predict(x, batch_size=4)
    assert type(predictions) is np.ndarray and predictions.shape == (10, 3)
    loss, accuracy = model.evaluate(x, y, batch_size=4)
    assert type(loss) is float and type(accuracy) is float


@pytest.mark.gpu
def test_fit_on_the_gpu_keeps_the_model_on_the_device(cp):
    x = np.random.default_rng(14).random((32, 7, 6, 2)).astype(np.float32)
    y = np.tile(np.float32([1, 0, 1]), (32, 1))  # learnable from the biases alone: the loss must fall
    model = build_on("gpu", small_model)
    model.compile(Adam(learning_rate=0.01), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x, y))
    assert all(type(v) is float for values in history.history.values() for v in values)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(isinstance(p, cp.ndarray) for p in model.trainable_params())
    assert all(isinstance(a, cp.ndarray) for a in model.optimizer.slots["m"])
