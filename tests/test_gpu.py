"""The GPU backend: CUDA kernels against the reference ones, CPU/GPU parity, devices and checkpoints.

Tests marked ``gpu`` need CuPy and a visible NVIDIA GPU and skip cleanly otherwise (CI has none).
The others run everywhere: the launch arithmetic for element counts past 2**31, the kernel
dispatch coverage of ``kernels/gpu.py``, the error that ``set_device("gpu")`` gives when CuPy, a
GPU or the CUDA libraries are missing (with CuPy stood in for), the kernels' plain entry points
(compiled by nvcc where it is installed), the CUDA source itself run thread by thread on the host
(compiled by g++, see cuda_on_host.py) against the reference kernels, and, with device arrays
emulated on the host, optimizer slots that follow their parameters and user arrays read with
``to_numpy``.
"""
import functools
import inspect
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import tinyconv
from tinyconv import backend, kernels, zoo
from tinyconv.diagnostics import gradcheck
from tinyconv.training.checkpoint import load_checkpoint, save_checkpoint
from tinyconv.kernels import geometry, gpu, reference
from tinyconv.layers import (Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D,
                             reset_names)
from tinyconv.model import Model
from tinyconv.optimizers import SGD, Adam

pytestmark = pytest.mark.backend  # the same code on either side of the array-module seam
from tinyconv.diagnostics.saliency import saliency_map

import cuda_on_host
from cuda_on_host import elementwise_as_cuda

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


def check_im2col_and_col2im(cp, x, window, strides, pads):
    cols = gpu.im2col(cp.asarray(x), (window, strides, pads))
    assert isinstance(cols, cp.ndarray) and cols.dtype == x.dtype
    np.testing.assert_array_equal(cols.get(), reference.im2col(x, (window, strides, pads)))
    upstream = np.random.default_rng(0).standard_normal(cols.shape).astype(x.dtype)
    dx = gpu.col2im(cp.asarray(upstream), x.shape, (window, strides, pads))
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx.get(), reference.col2im(upstream, x.shape, (window, strides, pads)),
                               rtol=1e-6, atol=1e-6)


POOL_VALUES = ["random", "negative", "ties", "nan"]


def pool_input(values, shape, dtype):
    """Negative inputs catch padding that would win as 0; small integers make ties (first one wins);
    NaN must win its window (the first NaN of several), as in the reference."""
    rng = np.random.default_rng(1)
    return {"random": rng.standard_normal(shape),
            "negative": -1 - rng.random(shape),
            "ties": rng.integers(0, 3, shape),
            "nan": np.where(rng.random(shape) < 0.3, np.nan, rng.integers(0, 3, shape))}[values].astype(dtype)


def check_maxpool(cp, x, window, strides, pads):
    y, argmax = gpu.maxpool_forward(cp.asarray(x), (window, strides, pads))
    y_ref, argmax_ref = reference.maxpool_forward(x, (window, strides, pads))
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(y.get(), y_ref)  # NaN equals NaN here
    np.testing.assert_array_equal(argmax.get(), argmax_ref)
    dy = np.random.default_rng(2).standard_normal(y_ref.shape).astype(x.dtype)
    dx = gpu.maxpool_backward(cp.asarray(dy), argmax, x.shape, (window, strides, pads))
    np.testing.assert_allclose(dx.get(), reference.maxpool_backward(dy, argmax_ref, x.shape, (window, strides, pads)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, strides, pads", WINDOW_CASES)
def test_im2col_and_col2im_match_reference(cp, shape, window, strides, pads, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    check_im2col_and_col2im(cp, x, window, strides, pads)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, strides, pads", WINDOW_CASES)
@pytest.mark.parametrize("values", POOL_VALUES)
def test_maxpool_matches_reference(cp, shape, window, strides, pads, dtype, values):
    check_maxpool(cp, pool_input(values, shape, dtype), window, strides, pads)


@pytest.mark.gpu
def test_grid_stride_loops_cover_every_element(cp, monkeypatch):
    """With the grid capped at 2 blocks of 8 threads, each thread walks several elements: the window
    cases and the warp must still equal the reference (the big-buffer test below needs 16 GiB)."""
    monkeypatch.setattr(gpu, "MAX_BLOCKS", 2)
    monkeypatch.setattr(gpu, "THREADS_PER_BLOCK", 8)
    assert gpu.launch_config(10**6) == (2, 8)
    strided = 0
    for shape, window, strides, pads in WINDOW_CASES:
        x = np.random.default_rng(3).standard_normal(shape)
        n, oh, ow, c = (shape[0], *geometry.window_output(shape, window, strides, pads), shape[3])
        strided += min(n * oh * ow * c, x.size) > 2 * 8  # every kernel of the case strides
        check_im2col_and_col2im(cp, x, window, strides, pads)
        check_maxpool(cp, pool_input("nan", shape, np.float32), window, strides, pads)
    assert strided == len(WINDOW_CASES) - 1  # all but the 1x1 image
    check_affine_warp(cp, (4, 9, 7, 3), "reflect", reach=0.5)


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


def check_affine_warp(cp, shape, fill_mode, reach):
    rng = np.random.default_rng(2)
    images = rng.random(shape).astype(np.float32)
    transforms = random_transforms(rng, shape[0], shape[1], shape[2], reach)
    out = gpu.affine_warp(cp.asarray(images), transforms, fill_mode, cval=0.25)
    assert isinstance(out, cp.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out.get(), reference.affine_warp(images, transforms, fill_mode, cval=0.25),
                               rtol=0, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("fill_mode", reference.FILL_MODES)
@pytest.mark.parametrize("shape", [(3, 9, 7, 3), (1, 1, 5, 1), (2, 6, 6, 2)])
@pytest.mark.parametrize("reach", [0.0, 0.5, 3.0])
def test_affine_warp_matches_reference(cp, fill_mode, shape, reach):
    check_affine_warp(cp, shape, fill_mode, reach)


@pytest.mark.gpu
def test_kernels_dispatch_device_arrays_to_the_gpu_module(cp):
    x = cp.asarray(np.random.default_rng(3).standard_normal((2, 5, 5, 3)).astype(np.float32))
    assert kernels.module_for(x) is gpu
    with kernels.reference_kernels():  # the reference switch is for host arrays only
        assert kernels.module_for(x) is gpu
    y, _ = kernels.maxpool_forward(x, ((2, 2), (2, 2), (0, 0, 0, 0)))
    assert isinstance(y, cp.ndarray)


@pytest.mark.gpu
def test_unsupported_dtype_is_a_clear_error(cp):
    with pytest.raises(TypeError, match="float32 or float64"):
        gpu.im2col(cp.zeros((1, 3, 3, 1), dtype=cp.float16), ((2, 2), (1, 1), (0, 0, 0, 0)))


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
    cols = gpu.im2col(x, (window, strides, pads))
    rows = h * w
    last = gpu.im2col(x[-1:], (window, strides, pads))
    assert bool((cols[-rows:] == last).all())
    dx = gpu.col2im(cols, x.shape, (window, strides, pads))
    del cols
    assert bool((dx[-1:] == gpu.col2im(last, x[-1:].shape, (window, strides, pads))).all())


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


# The probe that set_device("gpu") runs once CuPy sees a GPU: a CuPy wheel without the CUDA libraries.
NVRTC_MISSING = RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared "
                             "object file: No such file or directory")
HEADERS_MISSING = RuntimeError('catastrophic error: cannot open source file "cuda_fp16.h"\n\n1 catastrophic '
                               'error detected in the compilation of "/tmp/tmp0/kern.cu".\nCompilation terminated.\n')
CUBLAS_MISSING = RuntimeError("CuPy failed to load libcublas.so.12: OSError: libcublas.so.12: cannot open shared "
                              "object file: No such file or directory")


class NoBlasArray(np.ndarray):
    """A host array whose matrix product fails as CuPy's does without cuBLAS."""

    def __matmul__(self, other):
        raise CUBLAS_MISSING


def cupy_with_one_gpu(compile_error=None, matmul_error=False, doubles=True):
    """A stand-in for CuPy that sees one GPU; its kernels compile (or raise ``compile_error`` when
    first run, as CuPy compiles then) and run on NumPy."""
    def elementwise_kernel(in_params, out_params, operation, name):
        assert operation.replace(" ", "") == "y=x+x"  # what the stand-in computes

        def run(x):
            if compile_error is not None:
                raise compile_error
            return x + x if doubles else x
        return run

    def ones(n, dtype):
        x = np.ones(n, dtype=dtype)
        return x.view(NoBlasArray) if matmul_error else x

    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1)),
                                 ElementwiseKernel=elementwise_kernel, ones=ones, float32=np.float32)


@pytest.mark.parametrize("compile_error, matmul_error, cause", [
    (NVRTC_MISSING, False, "libnvrtc.so.12: cannot open shared object file"),
    (HEADERS_MISSING, False, 'cannot open source file "cuda_fp16.h" 1 catastrophic error'),
    (None, True, "libcublas.so.12: cannot open shared object file")], ids=["nvrtc", "headers", "cublas"])
def test_gpu_request_without_the_cuda_libraries_fails_at_once(monkeypatch, compile_error, matmul_error, cause):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", cupy_with_one_gpu(compile_error, matmul_error))
    with pytest.raises(RuntimeError) as error:
        tinyconv.set_device("gpu")
    message = str(error.value)
    assert "\n" not in message and "cannot compile or run CUDA kernels" in message and cause in message
    assert "NVRTC, cuBLAS" in message and "cupy-cuda12x[ctk]" in message and "cupy-cuda13x[ctk]" in message
    assert tinyconv.get_device() == "cpu"
    assert backend.gpu_available() is False


def test_gpu_request_checks_what_the_probe_computed(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", cupy_with_one_gpu(doubles=False))
    with pytest.raises(RuntimeError, match="computed 2.0 instead of 8.0"):
        tinyconv.set_device("gpu")
    assert tinyconv.get_device() == "cpu"
    monkeypatch.setitem(sys.modules, "cupy", cupy_with_one_gpu())
    tinyconv.set_device("gpu")  # a working toolkit passes the probe
    assert tinyconv.get_device() == "gpu"


# --- CuPy's compiled-kernel cache (runs without CuPy) -----------------------------------------------

WINDOW_KERNELS = ("im2col", "col2im", "maxpool_forward", "maxpool_backward")


def test_kernels_are_looked_up_by_plain_names(monkeypatch):
    """CuPy reads a module from its disk cache only when it was compiled without name_expressions
    (C++ names); the kernels are loaded by their extern "C" names instead."""
    compiled = []

    class RawModule:
        def __init__(self, **kwargs):
            compiled.append(kwargs)

        def get_function(self, name):
            return name

    monkeypatch.setattr(gpu, "_module", None)
    monkeypatch.setattr(gpu, "_kernels", {})
    monkeypatch.setattr(gpu, "_cupy", lambda: types.SimpleNamespace(RawModule=RawModule))
    assert gpu._kernel("im2col", np.float32) == "im2col_float"
    assert gpu._kernel("maxpool_backward", np.float64) == "maxpool_backward_double"
    assert gpu._kernel("affine_warp") == "affine_warp"
    assert len(compiled) == 1 and set(compiled[0]) == {"code", "options"}


def test_cuda_source_compiles_to_plain_entry_points(tmp_path):
    """nvcc, where installed, compiles the kernels without a GPU: one plain-named entry point per
    kernel and type that gpu.py launches, and the fused Adam operation in float and double."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("needs nvcc, the CUDA compiler")
    adam = "".join(elementwise_as_cuda(*gpu.ADAM_PARAMS, gpu.ADAM_OPERATION, "adam", t) for t in ("float", "double"))
    (tmp_path / "kernels.cu").write_text(gpu._SOURCE + adam)
    subprocess.run([nvcc, "--ptx", *gpu._OPTIONS, "-ftz=true", "kernels.cu", "-o", "kernels.ptx"],
                   cwd=tmp_path, check=True, capture_output=True)
    entries = set(re.findall(r"\.entry (\w+)\(", (tmp_path / "kernels.ptx").read_text()))
    launched = {gpu.entry_point(k, dtype) for k in WINDOW_KERNELS for dtype in DTYPES} | {"affine_warp"}
    assert entries == launched | {"adam_float", "adam_double"}


# --- the CUDA source run on the host (g++: runs without CuPy or a GPU) -------------------------------

@pytest.fixture(scope="module")
def host_cupy(tmp_path_factory):
    if not cuda_on_host.compiler_available():
        pytest.skip("needs g++ to run the CUDA source on the host")
    return cuda_on_host.HostCuPy(tmp_path_factory.mktemp("cuda_on_host"))


@pytest.fixture
def on_host(host_cupy, monkeypatch):
    """kernels/gpu.py with its CUDA source compiled by g++ and launched thread by thread on the host."""
    monkeypatch.setattr(gpu, "_cupy", lambda: host_cupy)
    monkeypatch.setattr(gpu, "_module", None)
    monkeypatch.setattr(gpu, "_kernels", {})
    monkeypatch.setattr(gpu, "_adam_kernel", None)
    monkeypatch.setattr(backend, "_cupy", host_cupy)  # what get_array_module returns for its arrays
    return host_cupy


@pytest.mark.parametrize("launch_limits", [None, (2, 8)], ids=["thread-per-element", "grid-stride"])
def test_cuda_window_kernels_on_the_host_match_reference(on_host, monkeypatch, launch_limits):
    """The GPU tests' window cases, ties and NaN included, on the CUDA source itself; once with the
    grid capped at 2 blocks of 8 threads, so that every thread walks several elements."""
    if launch_limits is not None:
        monkeypatch.setattr(gpu, "MAX_BLOCKS", launch_limits[0])
        monkeypatch.setattr(gpu, "THREADS_PER_BLOCK", launch_limits[1])
    for shape, window, strides, pads in WINDOW_CASES:
        for dtype in DTYPES:
            check_im2col_and_col2im(on_host, np.random.default_rng(0).standard_normal(shape).astype(dtype),
                                    window, strides, pads)
            for values in POOL_VALUES:
                check_maxpool(on_host, pool_input(values, shape, dtype), window, strides, pads)


@pytest.mark.parametrize("fill_mode", reference.FILL_MODES)
def test_cuda_affine_warp_on_the_host_matches_reference(on_host, fill_mode):
    for shape in [(3, 9, 7, 3), (1, 1, 5, 1)]:
        for reach in [0.0, 3.0]:
            check_affine_warp(on_host, shape, fill_mode, reach)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_adam_kernel_on_the_host_equals_the_reference(on_host, dtype):
    """On the host both round every operation in IEEE arithmetic, in the same order: equal bits."""
    check_fused_adam(on_host, dtype, rtol=0)


# --- arrays on the other device (emulated: runs without CuPy) ---------------------------------------

class EmulatedDeviceArray(np.ndarray):
    """A host array that the backend takes for a CuPy one (it goes by the type's module)."""
    __module__ = "cupy._emulated"

    def get(self):
        return self.view(np.ndarray).copy()


class OpaqueDeviceArray:
    """Like a CuPy array for user code: NumPy's implicit conversion fails, ``.get()`` gives the values."""
    __module__ = "cupy._emulated"

    def __init__(self, values):
        self._values = np.array(values)
        self.shape, self.dtype, self.ndim = self._values.shape, self._values.dtype, self._values.ndim

    def get(self):
        return self._values.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")


def on_emulated_device(a):
    return np.array(a).view(EmulatedDeviceArray)


def test_optimizer_slots_follow_the_model_to_the_other_device(monkeypatch):
    """Momentum moves with the parameters (the steps equal those of an optimizer that never moved);
    parameters of other shapes get fresh slots."""
    monkeypatch.setattr(backend, "_cupy", types.SimpleNamespace(
        asarray=lambda a, dtype=None: on_emulated_device(np.asarray(a, dtype=dtype)),
        zeros_like=lambda a: on_emulated_device(np.zeros_like(a))))
    rng = np.random.default_rng(16)
    params = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(3)]
    stayed, moved = SGD(0.1, momentum=0.9), SGD(0.1, momentum=0.9)
    on_host, moving = [p.copy() for p in params], [p.copy() for p in params]
    for step, device in enumerate(["cpu", "gpu", "cpu"]):
        if device == "gpu":
            moving = [on_emulated_device(p) for p in moving]
        else:
            moving = [backend.to_numpy(p) for p in moving]
        stayed.step(on_host, grads[step])
        moved.step(moving, [on_emulated_device(g) if device == "gpu" else g for g in grads[step]])
        assert all(backend.is_gpu_array(v) == (device == "gpu") for v in moved.slots["velocity"])
    for a, b in zip(moving, on_host):
        np.testing.assert_array_equal(a, b)
    other = [np.ones((4, 1)), np.ones(1)]
    moved.step(other, [np.zeros_like(p) for p in other])
    assert [v.shape for v in moved.slots["velocity"]] == [(4, 1), (1,)]
    assert all(not v.any() for v in moved.slots["velocity"]) and all((p == 1).all() for p in other)


def test_user_arrays_from_the_device_are_read_with_to_numpy():
    """set_weights and saliency_map take CuPy arrays (which refuse np.asarray) as well as NumPy ones."""
    model = small_model()
    images = np.random.default_rng(17).standard_normal((2, 7, 6, 2)).astype(np.float32)
    expected = saliency_map(model, images, 1)
    np.testing.assert_array_equal(saliency_map(model, OpaqueDeviceArray(images), 1), expected)
    dense = model.layers[-1]
    new = [w + 1 for w in dense.get_weights()]
    dense.set_weights([OpaqueDeviceArray(w) for w in new])
    for a, b in zip(dense.get_weights(), new):
        np.testing.assert_array_equal(a, b)


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
        loss = model.train_step((x, y))["loss"]
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


def check_fused_adam(cp, dtype, rtol):
    """The one-launch kernel against the xp-generic expression, both on ``cp`` arrays, over 3 steps
    (with a non-contiguous gradient, as a transposed view would give)."""
    rng = np.random.default_rng(15)
    w = rng.standard_normal((6, 5)).astype(dtype)
    fused = [cp.asarray(w), cp.zeros(w.shape, dtype=dtype), cp.zeros(w.shape, dtype=dtype)]
    readable = [a.copy() for a in fused]
    for t in range(1, 4):
        g = cp.asarray(rng.standard_normal((5, 6)).astype(dtype)).T
        assert not g.flags.c_contiguous
        step_size = 1e-3 * (1 - 0.999 ** t) ** 0.5 / (1 - 0.9 ** t)  # a Python float, as Adam passes
        gpu.adam_update(fused[0], g, fused[1], fused[2], step_size, 0.9, 0.999, 1e-7)
        reference.adam_update(readable[0], g, readable[1], readable[2], step_size, 0.9, 0.999, 1e-7)
    for a, b in zip(fused, readable):
        assert a.dtype == dtype
        np.testing.assert_allclose(a.get(), b.get(), rtol=rtol, atol=0)
    assert not np.array_equal(fused[0].get(), w)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_fused_adam_kernel_equals_the_readable_reference(cp, dtype, rtol):
    check_fused_adam(cp, dtype, rtol)


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
