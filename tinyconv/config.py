"""Global settings: the float type of new parameters and activations, the counters behind layer names,
and the list of every switch.

Every setting that lives in a process rather than in an object, in one list (each is set where it
acts, and read only there):

| setting | where | set by |
|---|---|---|
| float type of new parameters | here | ``tinyconv.set_floatx("float64")`` |
| the device of new arrays | ``backend.py`` | ``tinyconv.set_device("gpu")`` |
| the seed and the generators of each purpose | ``random.py`` | ``tinyconv.set_seed(seed)`` |
| the counters behind ``conv2d``, ``conv2d_1``, ... | here | ``tinyconv.backend.clear_session()`` (Keras's), ``tinyconv.layers.reset_names()`` |
| fast, reference or loop kernels | ``kernels/__init__.py`` | ``TINYCONV_KERNELS``, ``kernels.use_reference_kernels()`` |
| the width of the matrix-product pool | ``kernels/products.py`` | ``OPENBLAS_NUM_THREADS`` (else ``OMP_NUM_THREADS``, the cores) |
| OpenBLAS on one thread, passive OpenMP waits, malloc thresholds | ``kernels/cpu_tuning.py`` | importing tinyconv (``tune_process()``); ``TINYCONV_KEEP_FREED_MEMORY=0`` |
| where numba caches compiled kernels | ``kernels/compile_cache.py`` | ``NUMBA_CACHE_DIR``, else the install's or the user's cache |
"""
from __future__ import annotations

import numpy as np

_FLOATX = "float32"


def set_floatx(dtype: str) -> None:
    """Set the dtype of new parameters: ``"float32"`` (default) or ``"float64"`` (gradient checks)."""
    global _FLOATX
    if dtype not in ("float32", "float64"):
        raise ValueError(f"set_floatx: expected 'float32' or 'float64', got {dtype!r}")
    _FLOATX = dtype


def floatx() -> str:
    return _FLOATX


def float_dtype() -> np.dtype:
    return np.dtype(_FLOATX)


_name_counts: dict[str, int] = {}


def unique_name(base: str) -> str:
    """Keras-style names: ``conv2d``, ``conv2d_1``, ``conv2d_2``, ..."""
    count = _name_counts.get(base, 0)
    _name_counts[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def reset_names() -> None:
    """Restart the name counters (as ``keras.backend.clear_session`` does)."""
    _name_counts.clear()
