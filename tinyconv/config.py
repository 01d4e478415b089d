"""Global settings: the float type of new parameters and activations."""
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
