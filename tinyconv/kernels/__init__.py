"""Kernel dispatch: the one place that decides which implementation of a kernel runs.

(Which *algorithm* a Conv2D uses, im2col, Winograd or the loops of its definition, is decided in one
place too, ``layers/conv_algorithms.choose``, from the switches below and the layer's shape.)

- CuPy arrays go to ``gpu.py`` (CUDA kernels),
- NumPy arrays go to ``cpu.py`` (numba), or to ``reference.py`` (plain NumPy) when the reference
  path is switched on, by ``use_reference_kernels(True)`` or the environment variable
  ``TINYCONV_KERNELS=reference``. The reference path is slow but every line can be stepped through.
- ``use_loop_kernels(True)`` or ``TINYCONV_KERNELS=loops`` goes one step further back, to the
  definitions: Conv2D and MaxPooling2D run ``loops.py`` (Python loops over the output pixels,
  forward and backward), everything else the reference path.
"""
from __future__ import annotations

import contextlib
import os

from .. import backend
from . import loops, reference

PATHS = ("fast", "reference", "loops")
_path = os.environ.get("TINYCONV_KERNELS", "fast").lower()
if _path not in PATHS:
    raise ValueError(f"TINYCONV_KERNELS must be one of {PATHS}, got {_path!r}")
_cpu = None
_gpu = None


def use_reference_kernels(flag: bool = True) -> None:
    """Run the whole engine on the readable plain-NumPy kernels (``True``) or the fast ones."""
    _use_path("reference" if flag else "fast")


def use_loop_kernels(flag: bool = True) -> None:
    """Run Conv2D and MaxPooling2D on the loop kernels and the rest on the reference ones (``True``),
    or everything on the fast ones."""
    _use_path("loops" if flag else "fast")


def _use_path(path: str) -> None:
    global _path
    _path = path


def using_reference_kernels() -> bool:
    return _path == "reference"


def using_loop_kernels() -> bool:
    return _path == "loops"


@contextlib.contextmanager
def _path_switched(path: str):
    previous = _path
    _use_path(path)
    try:
        yield
    finally:
        _use_path(previous)


def reference_kernels(flag: bool = True):
    """``with reference_kernels(): ...`` runs the block on the reference path."""
    return _path_switched("reference" if flag else "fast")


def loop_kernels(flag: bool = True):
    """``with loop_kernels(): ...`` runs the block's Conv2D and MaxPooling2D on the loop kernels."""
    return _path_switched("loops" if flag else "fast")


def module_for(x):
    """The kernel module for an array: gpu for CuPy arrays, else reference or cpu (numba)."""
    global _cpu, _gpu
    if backend.is_gpu_array(x):
        if _gpu is None:
            from . import gpu as _gpu_module
            _gpu = _gpu_module
        return _gpu
    if _path != "fast":
        return reference
    if _cpu is None:  # imported lazily: importing numba costs a second
        from . import cpu as _cpu_module
        _cpu = _cpu_module
    return _cpu


def runs_loops(x) -> bool:
    """Whether ``x`` goes to the loop kernels (they are for host arrays only)."""
    return _path == "loops" and not backend.is_gpu_array(x)


def matmul(a, b, bias=None):
    """``a @ b`` for 2-D arrays, plus ``bias`` on every row if given; on the CPU the same bits on
    any number of threads (``products.py``)."""
    return module_for(a).matmul(a, b, bias)


def column_sums(a):
    """``a.sum(axis=0)`` for a 2-D array (a bias's gradient); on the CPU in pieces on every thread,
    the same bits on any number of them (``products.py``)."""
    return module_for(a).column_sums(a)


def im2col(x, window):
    """``window``: the layer's ``geometry.Window`` (size, strides, pads), as every kernel family takes it."""
    return module_for(x).im2col(x, window)


def col2im(cols, x_shape, window):
    return module_for(cols).col2im(cols, x_shape, window)


def has_winograd(x) -> bool:
    """Whether the kernels for ``x`` include the Winograd transforms (not on the GPU, where the
    im2col product already runs on cuBLAS)."""
    return hasattr(module_for(x), "winograd_input_transform")


def winograd_input_transform(x, padding, tiles, bt):
    return module_for(x).winograd_input_transform(x, padding, tiles, bt)


def winograd_input_transform_adjoint(dv, x_shape, padding, tiles, bt, out=None):
    """``out``: an array of ``x_shape`` to write dx into (a block of the layer's dx), else a new one."""
    return module_for(dv).winograd_input_transform_adjoint(dv, x_shape, padding, tiles, bt, out)


def winograd_output_transform(products, out_shape, bias, at, out=None):
    """``out``: an array of ``out_shape`` to write y into (a block of the layer's output), else a new one."""
    return module_for(products).winograd_output_transform(products, out_shape, bias, at, out)


def winograd_output_transform_adjoint(dy, at):
    return module_for(dy).winograd_output_transform_adjoint(dy, at)


def maxpool_forward(x, window):
    module = loops if runs_loops(x) else module_for(x)
    return module.maxpool_forward(x, window)


def maxpool_backward(dy, argmax, x_shape, window):
    module = loops if runs_loops(dy) else module_for(dy)
    return module.maxpool_backward(dy, argmax, x_shape, window)


def leaky_relu_forward(x, alpha):
    return module_for(x).leaky_relu_forward(x, alpha)


def leaky_relu_backward(dy, y, alpha):
    return module_for(dy).leaky_relu_backward(dy, y, alpha)


def batchnorm_statistics(x):
    """Per-channel mean and biased variance of x (M, C); see reference.batchnorm_statistics."""
    return module_for(x).batchnorm_statistics(x)


def batchnorm_forward(x, mean, inv_std, gamma, beta):
    return module_for(x).batchnorm_forward(x, mean, inv_std, gamma, beta)


def batchnorm_backward(dy, x_hat, scale, batch_statistics):
    return module_for(dy).batchnorm_backward(dy, x_hat, scale, batch_statistics)


def adam_update(w, g, m, v, step_size, beta_1, beta_2, epsilon):
    """Update w, m and v in place (see optimizers.Adam)."""
    module_for(w).adam_update(w, g, m, v, step_size, beta_1, beta_2, epsilon)


def affine_warp(images, transforms, fill_mode="nearest", cval=0.0):
    """Bilinear affine resampling of an (N, H, W, C) batch; ``transforms`` is (N, 2, 3), see reference."""
    if images.ndim != 4 or transforms.shape != (images.shape[0], 2, 3):
        raise ValueError(f"affine_warp: expected images (N, H, W, C) and transforms (N, 2, 3), "
                         f"got {images.shape} and {transforms.shape}")
    return module_for(images).affine_warp(images, transforms, fill_mode, cval)
