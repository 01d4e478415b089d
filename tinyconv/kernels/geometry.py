"""Window geometry: where a sliding window (a convolution's kernel, a pooling window) lands on an image.

One window is its size ``(KH, KW)``, its strides ``(SH, SW)`` and the zero padding around the image,
``pads = (top, bottom, left, right)``. Along one axis it fits

    O = floor((N + pad_before + pad_after - K) / S) + 1

times. Keras's ``"valid"`` has no padding; its ``"same"`` (TensorFlow's rule) pads just enough for
``O = ceil(N / S)``: ``total = max((ceil(N / S) - 1) * S + K - N, 0)``, ``total // 2`` before and the
rest (one more when odd) after. Every layer with a window and every kernel family (reference, numba,
CuPy, loops) takes these numbers from here, so they cannot disagree.
"""
from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    """One window's geometry, the value a layer hands to every kernel: ``size`` (KH, KW),
    ``strides`` (SH, SW) and ``pads`` (top, bottom, left, right)."""

    size: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]

    @classmethod
    def keras(cls, padding: str, h: int, w: int, size, strides) -> "Window":
        """The window of a layer with Keras's ``padding`` ("valid" or "same") on an H x W input."""
        return cls(tuple(size), tuple(strides), pads_for(padding, h, w, size, strides))


def output_size(n: int, k: int, s: int, pad_before: int, pad_after: int) -> int:
    """Window positions along one axis: floor((n + pads - k) / s) + 1."""
    return (n + pad_before + pad_after - k) // s + 1


def window_output(x_shape, window) -> tuple[int, int]:
    """``(OH, OW)``: the positions of ``window`` (a ``Window``, or a (size, strides, pads) triple) on
    an (N, H, W, C) input."""
    (kh, kw), (sh, sw), (top, bottom, left, right) = window
    return output_size(x_shape[1], kh, sh, top, bottom), output_size(x_shape[2], kw, sw, left, right)


def pads_for(padding: str, h: int, w: int, window, strides) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` for Keras's ``"valid"`` or ``"same"`` on an H x W input."""
    if padding == "valid":
        return 0, 0, 0, 0
    (kh, kw), (sh, sw) = window, strides
    total_h = max((-(-h // sh) - 1) * sh + kh - h, 0)
    total_w = max((-(-w // sw) - 1) * sw + kw - w, 0)
    return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2
