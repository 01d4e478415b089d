"""The array-module seam: every layer asks this module for ``xp`` (numpy or cupy).

Layers never import numpy-only or cupy-only code paths; they call ``get_array_module(x)`` and use
the returned module, so the same layer code runs on the CPU (NumPy + numba kernels) or on an
NVIDIA GPU (CuPy kernels). CuPy is imported lazily, only when the GPU is asked for.
"""
from __future__ import annotations

import numpy as np

from . import config

_DEVICE = "cpu"
_cupy = None

# The [ctk] extra brings the CUDA libraries CuPy compiles and multiplies with (NVRTC, cuBLAS, headers).
_WHEELS = 'pip install -e ".[gpu]" (CUDA 12, cupy-cuda12x[ctk]) or pip install "cupy-cuda13x[ctk]" (CUDA 13)'
_INSTALL_HINT = f"install CuPy for your CUDA version: {_WHEELS}"


def _one_line(exc: Exception, limit: int = 300) -> str:
    """An exception's text on one line (compiler logs span many), cut to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_toolkit(cupy) -> None:
    """Compile and run a tiny kernel and a tiny matrix product, or raise one clear error.

    A CuPy wheel installed without its CUDA libraries imports and sees the GPU, then fails at the
    first kernel compile (NVRTC, CUDA headers) or matrix product (cuBLAS): this finds that at
    ``set_device("gpu")``, not in the middle of a forward pass.
    """
    try:
        double = cupy.ElementwiseKernel("T x", "T y", "y = x + x", "tinyconv_probe")
        twos = double(cupy.ones(2, dtype=cupy.float32))
        product = float((twos[None, :] @ twos[:, None])[0, 0])  # reading it back waits for both kernels
    except Exception as exc:  # NVRTC, cuBLAS or headers missing: CuPy raises several kinds
        raise RuntimeError(f"set_device('gpu'): CuPy sees a GPU but cannot compile or run CUDA kernels "
                           f"({_one_line(exc)}); the CUDA toolkit libraries (NVRTC, cuBLAS) are missing, "
                           f"install CuPy with them: {_WHEELS}") from exc
    if product != 8.0:
        raise RuntimeError(f"set_device('gpu'): a test kernel on the GPU computed {product} instead of 8.0; "
                           "check the NVIDIA driver and the CuPy wheel")


def _import_cupy():
    """Import CuPy and check that it can see a GPU; raise one clear error otherwise."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(f"set_device('gpu') needs CuPy, which is not installed: {_INSTALL_HINT}") from exc
    n_gpus, cause = 0, None
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken, or a wheel for another CUDA version
        cause = exc
    if n_gpus < 1:
        reason = "" if cause is None else f" ({_one_line(cause)})"
        raise RuntimeError(f"set_device('gpu'): CuPy is installed but no CUDA GPU is visible{reason}; "
                           "install the NVIDIA driver and the CuPy wheel for the CUDA version that "
                           f"nvidia-smi shows: {_WHEELS}") from cause
    _check_toolkit(cupy)
    _cupy = cupy
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports, sees at least one GPU and can compile for it (never raises)."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def set_device(device: str) -> None:
    """Choose where new parameters and batches live: ``"cpu"`` (default) or ``"gpu"``."""
    global _DEVICE
    if device not in ("cpu", "gpu"):
        raise ValueError(f"set_device: expected 'cpu' or 'gpu', got {device!r}")
    if device == "gpu":
        _import_cupy()
    _DEVICE = device


def get_device() -> str:
    return _DEVICE


def device_module():
    """The array module of the current device (numpy on the CPU, cupy on the GPU)."""
    return _import_cupy() if _DEVICE == "gpu" else np


def is_gpu_array(x) -> bool:
    # Checked by module name so that numpy-only installs never import cupy.
    return type(x).__module__.startswith("cupy")


def get_array_module(x):
    """numpy for host arrays (and Python scalars), cupy for device arrays."""
    return _import_cupy() if is_gpu_array(x) else np


def to_device(x, dtype=None):
    """Move an array to the current device (a no-op when it is already there)."""
    xp = device_module()
    return xp.asarray(x, dtype=dtype)


def to_numpy(x) -> np.ndarray:
    """Bring an array back to the host as a NumPy array."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


# --- Keras's backend functions that tutorials call (``from keras import backend as K``) -------------------
def image_data_format() -> str:
    """Always ``"channels_last"``: images are (N, H, W, C) everywhere in tinyconv."""
    return "channels_last"


def epsilon() -> float:
    """Keras's fuzz factor, 1e-7: the clipping of the cross-entropies and the optimizers' default."""
    return 1e-7


def floatx() -> str:
    return config.floatx()


def clear_session() -> None:
    """Start layer names afresh (``conv2d``, ``conv2d_1``, ... again), as Keras does."""
    config.reset_names()
