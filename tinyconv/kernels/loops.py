"""Loop kernels: Conv2D and MaxPooling2D written as the definitions, one output pixel at a time.

These are the "naive" versions of the textbooks (CS231n's ``conv_forward_naive``): no im2col, no
matrix product over the whole batch, just the sums of docs/conv2d.md and docs/maxpooling2d.md as
Python loops over the output. They are slow (use small inputs) and are there to be read and stepped
through. ``TINYCONV_KERNELS=loops`` or ``tinyconv.kernels.use_loop_kernels()`` runs every Conv2D and
MaxPooling2D of a model on them; the tests hold them equal to im2col and to the reference kernels.

Layout is NHWC, ``padding`` is ``(top, bottom, left, right)``, as in ``reference.py``.
"""
from __future__ import annotations

import numpy as np

from .geometry import window_output
from .reference import pad_nhwc


def conv2d_forward(x, kernel, bias, window):
    """z[n, r, q, f] = b[f] + sum over (i, j, c) of x_padded[n, r*SH + i, q*SW + j, c] * K[i, j, c, f].

    x (N, H, W, C), kernel (KH, KW, C, F), bias (F,) -> z (N, OH, OW, F).
    """
    _, strides, padding = window
    n, h, w, _ = x.shape
    kh, kw, _, f = kernel.shape
    sh, sw = strides
    oh, ow = window_output(x.shape, window)
    x_padded = pad_nhwc(x, padding)
    z = np.empty((n, oh, ow, f), dtype=x.dtype)
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                window = x_padded[b, r * sh:r * sh + kh, q * sw:q * sw + kw, :]  # (KH, KW, C)
                # Every filter f takes the dot product of the window with its (KH, KW, C) slice.
                z[b, r, q, :] = (window[..., None] * kernel).sum(axis=(0, 1, 2)) + bias
    return z


def conv2d_backward(dz, x, kernel, window):
    """The three gradients of ``conv2d_forward`` for the upstream gradient dz (N, OH, OW, F).

    Output pixel (r, q) used the window under it once, so it sends dz[n, r, q, :] back along the
    same products: to the kernel (times the window) and to the window (times the kernel).
    Windows overlap, so both gradients add up (``+=``). Returns ``(dkernel, dbias, dx)``.
    """
    _, strides, padding = window
    n, oh, ow, _ = dz.shape
    kh, kw, _, _ = kernel.shape
    sh, sw = strides
    top, _, left, _ = padding
    x_padded = pad_nhwc(x, padding)
    dx_padded = np.zeros_like(x_padded)
    dkernel = np.zeros_like(kernel)
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                rows, cols = slice(r * sh, r * sh + kh), slice(q * sw, q * sw + kw)
                g = dz[b, r, q, :]                                           # (F,)
                dkernel += x_padded[b, rows, cols, :, None] * g              # (KH, KW, C, F)
                dx_padded[b, rows, cols, :] += (kernel * g).sum(axis=3)      # (KH, KW, C)
    dbias = dz.sum(axis=(0, 1, 2))
    h, w = x.shape[1], x.shape[2]
    return dkernel, dbias, dx_padded[:, top:top + h, left:left + w, :]  # padding is no input


def maxpool_forward(x, window):
    """y[n, r, q, c] = the largest value of window (r, q) in channel c; padding is -inf.

    Returns ``(y, argmax)`` like ``reference.maxpool_forward``: argmax is the winner's position
    ``i * PW + j`` inside its window, the first one (row-major) on a tie; a NaN wins its window.
    """
    pool_size, strides, padding = window
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = pool_size, strides
    oh, ow = window_output(x.shape, window)
    x_padded = pad_nhwc(x, padding, value=-np.inf)
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    argmax = np.empty((n, oh, ow, c), dtype=np.int32)
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                for k in range(c):
                    best = 0
                    for i in range(ph):
                        for j in range(pw):
                            value = x_padded[b, r * sh + i, q * sw + j, k]
                            current = x_padded[b, r * sh + best // pw, q * sw + best % pw, k]
                            # Strictly larger: a tie keeps the first. A NaN beats numbers (the first
                            # NaN stays), as in np.max.
                            if value > current or (np.isnan(value) and not np.isnan(current)):
                                best = i * pw + j
                    argmax[b, r, q, k] = best
                    y[b, r, q, k] = x_padded[b, r * sh + best // pw, q * sw + best % pw, k]
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, window):
    """dx[winner of (n, r, q, c)] += dy[n, r, q, c]; every other input of the window gets 0."""
    pool_size, strides, padding = window
    n, oh, ow, c = dy.shape
    (_, pw), (sh, sw) = pool_size, strides
    top, bottom, left, right = padding
    h, w = x_shape[1], x_shape[2]
    dx_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=dy.dtype)
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                for k in range(c):
                    i, j = divmod(int(argmax[b, r, q, k]), pw)
                    dx_padded[b, r * sh + i, q * sw + j, k] += dy[b, r, q, k]
    return dx_padded[:, top:top + h, left:left + w, :]
