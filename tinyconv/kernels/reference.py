"""Readable plain-NumPy kernels: the definitions that the fast kernels are tested against.

Layout is NHWC. ``padding`` is ``(top, bottom, left, right)``. Column order inside an im2col row is
(kernel row, kernel column, channel), which matches a kernel of shape ``(KH, KW, C, F)`` reshaped
to ``(KH*KW*C, F)``: the product ``cols @ kernel`` is the NHWC convolution output.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from .geometry import window_output


def pad_nhwc(x, padding, value=0.0):
    """Pad H and W of an NHWC batch by ``(top, bottom, left, right)``."""
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows_shape(x_shape, window):
    """(N, OH, OW, C): the batch, the window positions (geometry.py) and the channels."""
    return (x_shape[0], *window_output(x_shape, window), x_shape[3])


def matmul(a, b, bias=None):
    """``a @ b`` for 2-D arrays, plus ``bias`` on every row if given: what ``products.matmul``
    computes in pieces."""
    product = get_array_module(a).matmul(a, b)
    return product if bias is None else product + bias


def column_sums(a):
    """The sum of a 2-D array's rows: what ``products.column_sums`` adds up in pieces."""
    return a.sum(axis=0)


def im2col(x, window):
    """(N, H, W, C) -> (N*OH*OW, KH*KW*C): one row per output pixel, holding the window it sees."""
    kernel_size, strides, padding = window
    kh, kw = kernel_size
    sh, sw = strides
    n, oh, ow, c = _windows_shape(x.shape, window)
    xp = pad_nhwc(x, padding)
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # Kernel tap (i, j) sees input rows i, i+sh, ..., i+sh*(oh-1) (same for columns).
            cols[:, :, :, i, j, :] = xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
    return cols.reshape(n * oh * ow, kh * kw * c)


def col2im(cols, x_shape, window):
    """The adjoint of im2col: (N*OH*OW, KH*KW*C) -> (N, H, W, C), summing where windows overlap."""
    kernel_size, strides, padding = window
    kh, kw = kernel_size
    sh, sw = strides
    top, bottom, left, right = padding
    n, oh, ow, c = _windows_shape(x_shape, window)
    h, w = x_shape[1], x_shape[2]
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    dx_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_padded[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :] += cols[:, :, :, i, j, :]
    return dx_padded[:, top:top + h, left:left + w, :]


# ---------------------------------------------------------------------------------------------
# Winograd F(m x m, 3x3) transforms (used by tinyconv.layers.winograd, which explains the method).
#
# The input is cut into a x a tiles (a = m + 2) at stride m; neighbours overlap by two pixels.
# Each tile d becomes B^T d B, and each a x a product tile becomes the m x m output tile A^T M A.
# ``bt`` is B^T (a x a) and ``at`` is A^T (m x a); the tile size follows from them. Transformed
# tiles are stored as (a*a, tiles, channels): entry (i, j) of every tile is one contiguous
# (tiles, channels) matrix, so the a*a products are ordinary matrix products. Tiles are numbered
# (image, tile row, tile column), row-major.
# ---------------------------------------------------------------------------------------------

def winograd_tiles(out_h: int, out_w: int, m: int) -> tuple[int, int]:
    """Tile rows and columns covering an OH x OW output with m x m tiles (the last may stick out)."""
    return -(-out_h // m), -(-out_w // m)


def winograd_tile_padding(x_shape, padding, tiles, m: int):
    """The convolution's padding, plus zeros below and right so the input holds whole tiles.

    The extra rows and columns only feed outputs past OH x OW, which are cut off.
    """
    top, _, left, _ = padding
    th, tw = tiles
    return top, m * th + 2 - x_shape[1] - top, left, m * tw + 2 - x_shape[2] - left


def winograd_input_transform(x, padding, tiles, bt):
    """(N, H, W, C) -> V of shape (a*a, N*TH*TW, C): every a x a input tile d becomes B^T d B."""
    a = bt.shape[0]
    m, (th, tw) = a - 2, tiles
    n, c = x.shape[0], x.shape[3]
    xp = pad_nhwc(x, winograd_tile_padding(x.shape, padding, tiles, m))
    d = np.empty((a, a, n, th, tw, c), dtype=x.dtype)
    for r in range(a):
        for s in range(a):
            d[r, s] = xp[:, r:r + m * th:m, s:s + m * tw:m, :]  # entry (r, s) of every tile
    v = np.einsum("ir,js,rsntwc->ijntwc", bt, bt, d, optimize=True)
    return v.reshape(a * a, n * th * tw, c)


def winograd_input_transform_adjoint(dv, x_shape, padding, tiles, bt, out=None):
    """The adjoint of the input transform: each tile gets B dV B^T, and overlapping tiles add up."""
    a = bt.shape[0]
    m, (th, tw) = a - 2, tiles
    n, h, w, c = x_shape
    dd = np.einsum("ir,js,ijntwc->rsntwc", bt, bt, dv.reshape(a, a, n, th, tw, c), optimize=True)
    top, bottom, left, right = winograd_tile_padding(x_shape, padding, tiles, m)
    dx_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=dv.dtype)
    for r in range(a):
        for s in range(a):
            dx_padded[:, r:r + m * th:m, s:s + m * tw:m, :] += dd[r, s]
    return _written(dx_padded[:, top:top + h, left:left + w, :], out)


def winograd_output_transform(products, out_shape, bias, at, out=None):
    """M of shape (a*a, N*TH*TW, F) -> (N, OH, OW, F): every tile becomes A^T M A, plus the bias."""
    m, a = at.shape
    n, oh, ow, f = out_shape
    th, tw = winograd_tiles(oh, ow, m)
    y = np.einsum("ai,bj,ijntwf->ntawbf", at, at, products.reshape(a, a, n, th, tw, f), optimize=True)
    return _written(y.reshape(n, m * th, m * tw, f)[:, :oh, :ow, :] + bias, out)


def _written(result, out):
    """``result``, or ``out`` holding it (the layer's own array, when the caller passes one)."""
    if out is None:
        return result
    out[...] = result
    return out


def winograd_output_transform_adjoint(dy, at):
    """The adjoint of the output transform: (N, OH, OW, F) -> dM of shape (a*a, N*TH*TW, F)."""
    m, a = at.shape
    n, oh, ow, f = dy.shape
    th, tw = winograd_tiles(oh, ow, m)
    dy_tiles = np.zeros((n, m * th, m * tw, f), dtype=dy.dtype)
    dy_tiles[:, :oh, :ow, :] = dy
    dm = np.einsum("ai,bj,ntawbf->ijntwf", at, at, dy_tiles.reshape(n, th, m, tw, m, f), optimize=True)
    return dm.reshape(a * a, n * th * tw, f)


def maxpool_forward(x, window):
    """Max over each window; padding is -inf so it never wins.

    Returns ``(y, argmax)``: y is (N, OH, OW, C); argmax holds, for each output, the position
    ``i * PW + j`` inside its window of the (first) maximum, which is what backward routes to.
    A NaN propagates, as in ``np.max``: a window holding one gives NaN, and its first NaN is the
    argmax (NumPy's ``argmax`` rule).
    """
    pool_size, strides, padding = window
    ph, pw = pool_size
    sh, sw = strides
    n, oh, ow, c = _windows_shape(x.shape, window)
    xp = pad_nhwc(x, padding, value=-np.inf)
    windows = np.empty((n, oh, ow, c, ph * pw), dtype=x.dtype)
    for i in range(ph):
        for j in range(pw):
            windows[..., i * pw + j] = xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
    argmax = windows.argmax(axis=-1).astype(np.int32)  # first maximum on ties
    y = np.take_along_axis(windows, argmax[..., None].astype(np.intp), axis=-1)[..., 0]
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, window):
    """Route each output gradient to the input that won its window (adding where windows overlap)."""
    pool_size, strides, padding = window
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


def leaky_relu_forward(x, alpha):
    """y = x where x > 0, alpha * x elsewhere (alpha = 0 gives ReLU)."""
    xp = get_array_module(x)
    return xp.where(x > 0, x, x * x.dtype.type(alpha))


def leaky_relu_backward(dy, y, alpha):
    """dx = dy where the input was positive, alpha * dy elsewhere.

    Reads the sign from the output y: for alpha >= 0, y > 0 exactly where x > 0, so the layer
    need not keep its input.
    """
    xp = get_array_module(dy)
    return xp.where(y > 0, dy, dy * dy.dtype.type(alpha))


def adam_update(w, g, m, v, step_size, beta_1, beta_2, epsilon):
    """One Adam step in place: m, v updated, then w -= step_size * m / (sqrt(v) + epsilon)."""
    xp = get_array_module(w)
    m *= beta_1
    m += (1 - beta_1) * g
    v *= beta_2
    v += (1 - beta_2) * g * g
    w -= (step_size * m / (xp.sqrt(v) + epsilon)).astype(w.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# Batch normalization over rows: x is (M, C), one row per pixel (N*H*W of them for NHWC images),
# one column per channel; see layers/normalization.py for the math.
# ---------------------------------------------------------------------------------------------

def batchnorm_statistics(x):
    """Per-channel mean and biased variance of an (M, C) array: two (C,) arrays."""
    mean = x.mean(axis=0)
    variance = ((x - mean) ** 2).mean(axis=0)
    return mean, variance


def batchnorm_forward(x, mean, inv_std, gamma, beta):
    """``x_hat = (x - mean) * inv_std`` and ``y = gamma * x_hat + beta``; returns ``(y, x_hat)``."""
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, x_hat


def batchnorm_backward(dy, x_hat, scale, batch_statistics):
    """``(dx, dgamma, dbeta)`` from dy (M, C), the cached x_hat and ``scale = gamma * inv_std``.

    ``dbeta = sum(dy)``, ``dgamma = sum(dy * x_hat)`` over the rows. With the batch's own
    statistics (training) the mean and variance depend on x too, which gives
    ``dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat))``; with fixed (moving) ones,
    ``dx = scale * dy``.
    """
    dbeta = dy.sum(axis=0)
    dgamma = (dy * x_hat).sum(axis=0)
    if not batch_statistics:
        return scale * dy, dgamma, dbeta
    m = dy.shape[0]
    return scale * (dy - dbeta / m - x_hat * (dgamma / m)), dgamma, dbeta


# ---------------------------------------------------------------------------------------------
# Affine warp (used by tinyconv.data.ImageDataGenerator)
#
# Each output pixel (row, col) samples the input at T @ (row, col, 1) (inverse mapping) with
# bilinear interpolation. Outside the image, ``fill_mode`` decides, exactly as
# scipy.ndimage.affine_transform(order=1) does for the same mode name:
#   nearest   clamp to the edge                            a a | a b c d | d d
#   constant  cval wherever a coordinate is outside [0, n - 1] (no blending with cval)
#   reflect   half-sample symmetric                        b a | a b c d | d c
#   wrap      periodic with period n - 1 (scipy's "wrap": the first and last samples coincide)
# ---------------------------------------------------------------------------------------------

FILL_MODES = ("nearest", "constant", "reflect", "wrap")


def check_fill_mode(fill_mode: str) -> int:
    """The position of ``fill_mode`` in FILL_MODES (the code the numba kernel takes)."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"affine_warp: fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    return FILL_MODES.index(fill_mode)


def _wrap_coordinate(coord, n):
    """scipy's "wrap" folds a coordinate outside [0, n - 1] back with period n - 1."""
    if n == 1:
        return np.zeros_like(coord)
    period = n - 1
    coord = np.where(coord < 0, coord + period * (np.floor(-coord / period) + 1), coord)
    return np.where(coord > period, coord - period * np.floor(coord / period), coord)


def _fold_index(i, n, fill_mode):
    """Map integer sample indices outside [0, n) into the image."""
    if fill_mode == "reflect":
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    # "nearest" clamps; for "constant" and "wrap" the coordinate is already inside [0, n - 1]
    # and clamping only guards the right neighbour of the last sample (whose weight is 0).
    return np.clip(i, 0, n - 1)


def _axis_samples(coord, n, fill_mode):
    """For coordinates along one axis: the two neighbour indices, the weight of the second, validity."""
    if fill_mode == "wrap":
        coord = _wrap_coordinate(coord, n)
    inside = (coord >= 0) & (coord <= n - 1)
    lower = np.floor(coord)
    weight = coord - lower
    lower = lower.astype(np.int64)
    return _fold_index(lower, n, fill_mode), _fold_index(lower + 1, n, fill_mode), weight, inside


def affine_warp(images, transforms, fill_mode="nearest", cval=0.0):
    """Resample each image at affinely mapped coordinates, bilinearly.

    Parameters
    ----------
    images : (N, H, W, C) float array
    transforms : (N, 2, 3) float64
        ``transforms[k] @ (row, col, 1)`` is the input coordinate (row, col) that output pixel
        (row, col) of image k samples.
    fill_mode : {"nearest", "constant", "reflect", "wrap"}
    cval : float
        The value outside the image for ``fill_mode="constant"``.

    Returns
    -------
    (N, H, W, C) float32
    """
    check_fill_mode(fill_mode)
    n, h, w, c = images.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    t = np.asarray(transforms, dtype=np.float64)[:, :, :, None, None]  # broadcast over (H, W)
    src_rows = t[:, 0, 0] * rows + t[:, 0, 1] * cols + t[:, 0, 2]  # (N, H, W)
    src_cols = t[:, 1, 0] * rows + t[:, 1, 1] * cols + t[:, 1, 2]
    r0, r1, wr, inside_r = _axis_samples(src_rows, h, fill_mode)
    c0, c1, wc, inside_c = _axis_samples(src_cols, w, fill_mode)
    batch = np.arange(n)[:, None, None]
    x = images.astype(np.float64)
    wr, wc = wr[..., None], wc[..., None]
    out = ((1 - wr) * (1 - wc) * x[batch, r0, c0] + (1 - wr) * wc * x[batch, r0, c1]
           + wr * (1 - wc) * x[batch, r1, c0] + wr * wc * x[batch, r1, c1])
    if fill_mode == "constant":
        out = np.where((inside_r & inside_c)[..., None], out, cval)
    return out.astype(np.float32)
