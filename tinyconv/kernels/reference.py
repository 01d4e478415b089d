"""Readable plain-NumPy kernels: the definitions that the fast kernels are tested against.

Layout is NHWC. ``padding`` is ``(top, bottom, left, right)``. Column order inside an im2col row is
(kernel row, kernel column, channel), which matches a kernel of shape ``(KH, KW, C, F)`` reshaped
to ``(KH*KW*C, F)``: the product ``cols @ kernel`` is the NHWC convolution output.
"""
from __future__ import annotations

import numpy as np


def output_size(n: int, k: int, s: int, pad_before: int, pad_after: int) -> int:
    """Number of window positions along one axis: floor((n + pads - k) / s) + 1."""
    return (n + pad_before + pad_after - k) // s + 1


def pad_nhwc(x, padding, value=0.0):
    """Pad H and W of an NHWC batch by ``(top, bottom, left, right)``."""
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows_shape(x_shape, kernel_size, strides, padding):
    n, h, w, c = x_shape
    (kh, kw), (sh, sw), (top, bottom, left, right) = kernel_size, strides, padding
    return n, output_size(h, kh, sh, top, bottom), output_size(w, kw, sw, left, right), c


def im2col(x, kernel_size, strides, padding):
    """(N, H, W, C) -> (N*OH*OW, KH*KW*C): one row per output pixel, holding the window it sees."""
    kh, kw = kernel_size
    sh, sw = strides
    n, oh, ow, c = _windows_shape(x.shape, kernel_size, strides, padding)
    xp = pad_nhwc(x, padding)
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # Kernel tap (i, j) sees input rows i, i+sh, ..., i+sh*(oh-1) (same for columns).
            cols[:, :, :, i, j, :] = xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
    return cols.reshape(n * oh * ow, kh * kw * c)


def col2im(cols, x_shape, kernel_size, strides, padding):
    """The adjoint of im2col: (N*OH*OW, KH*KW*C) -> (N, H, W, C), summing where windows overlap."""
    kh, kw = kernel_size
    sh, sw = strides
    top, bottom, left, right = padding
    n, oh, ow, c = _windows_shape(x_shape, kernel_size, strides, padding)
    h, w = x_shape[1], x_shape[2]
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    dx_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_padded[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :] += cols[:, :, :, i, j, :]
    return dx_padded[:, top:top + h, left:left + w, :]


def maxpool_forward(x, pool_size, strides, padding):
    """Max over each window; padding is -inf so it never wins.

    Returns ``(y, argmax)``: y is (N, OH, OW, C); argmax holds, for each output, the position
    ``i * PW + j`` inside its window of the (first) maximum, which is what backward routes to.
    """
    ph, pw = pool_size
    sh, sw = strides
    n, oh, ow, c = _windows_shape(x.shape, pool_size, strides, padding)
    xp = pad_nhwc(x, padding, value=-np.inf)
    windows = np.empty((n, oh, ow, c, ph * pw), dtype=x.dtype)
    for i in range(ph):
        for j in range(pw):
            windows[..., i * pw + j] = xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
    argmax = windows.argmax(axis=-1).astype(np.int32)  # first maximum on ties
    y = np.take_along_axis(windows, argmax[..., None].astype(np.intp), axis=-1)[..., 0]
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, pool_size, strides, padding):
    """Route each output gradient to the input that won its window (adding where windows overlap)."""
    ph, pw = pool_size
    sh, sw = strides
    top, bottom, left, right = padding
    n, oh, ow, c = dy.shape
    h, w = x_shape[1], x_shape[2]
    dx_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=dy.dtype)
    for i in range(ph):
        for j in range(pw):
            routed = np.where(argmax == i * pw + j, dy, 0)
            dx_padded[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :] += routed
    return dx_padded[:, top:top + h, left:left + w, :]
