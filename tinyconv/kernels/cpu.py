"""numba kernels for the CPU: the same functions as ``reference.py``, parallel over the batch.

Each public function has the reference signature; the ``_jit`` helpers do the work on
preallocated outputs. The first call compiles (seconds); ``cache=True`` keeps the machine code
on disk for later runs. ``NUMBA_DISABLE_JIT=1`` turns these into plain Python for a debugger.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_tuning import tune_process_for_cpu_kernels
from .reference import output_size

# Before numba starts its OpenMP threads (at the first parallel kernel): see cpu_tuning.
tune_process_for_cpu_kernels()


@njit(parallel=True, cache=True)
def _im2col(x, cols, kh, kw, sh, sw, top, left):
    n, h, w, c = x.shape
    _, oh, ow, _, _, _ = cols.shape
    for b in prange(n * oh):  # one output row per task: no two tasks write the same place
        nn, r = b // oh, b % oh
        for q in range(ow):
            for i in range(kh):
                row = r * sh + i - top
                for j in range(kw):
                    col = q * sw + j - left
                    if 0 <= row < h and 0 <= col < w:
                        for ch in range(c):
                            cols[nn, r, q, i, j, ch] = x[nn, row, col, ch]
                    else:
                        for ch in range(c):
                            cols[nn, r, q, i, j, ch] = 0.0


@njit(parallel=True, cache=True)
def _col2im(cols, dx, sh, sw, top, left):
    # A gather: each input pixel sums the window entries that saw it, so tasks never collide.
    n, h, w, c = dx.shape
    _, oh, ow, kh, kw, _ = cols.shape
    for b in prange(n * h):
        nn, row = b // h, b % h
        for col in range(w):
            for ch in range(c):
                dx[nn, row, col, ch] = 0.0
            for i in range(kh):
                r_num = row + top - i
                if r_num < 0 or r_num % sh != 0:
                    continue
                r = r_num // sh
                if r >= oh:
                    continue
                for j in range(kw):
                    q_num = col + left - j
                    if q_num < 0 or q_num % sw != 0:
                        continue
                    q = q_num // sw
                    if q >= ow:
                        continue
                    for ch in range(c):
                        dx[nn, row, col, ch] += cols[nn, r, q, i, j, ch]


@njit(parallel=True, cache=True)
def _maxpool_forward(x, y, argmax, ph, pw, sh, sw, top, left):
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for b in prange(n * oh):
        nn, r = b // oh, b % oh
        for q in range(ow):
            for ch in range(c):
                y[nn, r, q, ch] = -np.inf
                argmax[nn, r, q, ch] = 0
            # Window taps outermost and channels innermost: contiguous reads that vectorize.
            for i in range(ph):
                row = r * sh + i - top
                if row < 0 or row >= h:
                    continue
                for j in range(pw):
                    col = q * sw + j - left
                    if col < 0 or col >= w:
                        continue
                    for ch in range(c):
                        v = x[nn, row, col, ch]
                        if v > y[nn, r, q, ch]:  # strict: the first maximum wins a tie, as in the reference
                            y[nn, r, q, ch] = v
                            argmax[nn, r, q, ch] = i * pw + j


@njit(parallel=True, cache=True)
def _maxpool_backward(dy, argmax, dx, ph, pw, sh, sw, top, left):
    # Gather form of the scatter "dx[winner] += dy": each input pixel looks at the windows covering it.
    n, h, w, c = dx.shape
    _, oh, ow, _ = dy.shape
    for b in prange(n * h):
        nn, row = b // h, b % h
        for col in range(w):
            for ch in range(c):
                dx[nn, row, col, ch] = 0.0
            for i in range(ph):
                r_num = row + top - i
                if r_num < 0 or r_num % sh != 0:
                    continue
                r = r_num // sh
                if r >= oh:
                    continue
                for j in range(pw):
                    q_num = col + left - j
                    if q_num < 0 or q_num % sw != 0:
                        continue
                    q = q_num // sw
                    if q >= ow:
                        continue
                    k = i * pw + j
                    for ch in range(c):
                        if argmax[nn, r, q, ch] == k:
                            dx[nn, row, col, ch] += dy[nn, r, q, ch]


def _out_hw(x_shape, kernel_size, strides, padding):
    (kh, kw), (sh, sw), (top, bottom, left, right) = kernel_size, strides, padding
    return output_size(x_shape[1], kh, sh, top, bottom), output_size(x_shape[2], kw, sw, left, right)


def im2col(x, kernel_size, strides, padding, out=None):
    n, _, _, c = x.shape
    kh, kw = kernel_size
    oh, ow = _out_hw(x.shape, kernel_size, strides, padding)
    if out is None:
        out = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), out.reshape(n, oh, ow, kh, kw, c), kh, kw, strides[0], strides[1],
            padding[0], padding[2])
    return out


def col2im(cols, x_shape, kernel_size, strides, padding):
    n, _, _, c = x_shape
    kh, kw = kernel_size
    oh, ow = _out_hw(x_shape, kernel_size, strides, padding)
    dx = np.empty(x_shape, dtype=cols.dtype)
    cols6 = np.ascontiguousarray(cols).reshape(n, oh, ow, kh, kw, c)
    _col2im(cols6, dx, strides[0], strides[1], padding[0], padding[2])
    return dx


def maxpool_forward(x, pool_size, strides, padding):
    n, _, _, c = x.shape
    oh, ow = _out_hw(x.shape, pool_size, strides, padding)
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    argmax = np.empty((n, oh, ow, c), dtype=np.int32)
    _maxpool_forward(np.ascontiguousarray(x), y, argmax, pool_size[0], pool_size[1],
                     strides[0], strides[1], padding[0], padding[2])
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, pool_size, strides, padding):
    dx = np.empty(x_shape, dtype=dy.dtype)
    _maxpool_backward(np.ascontiguousarray(dy), argmax, dx, pool_size[0], pool_size[1],
                      strides[0], strides[1], padding[0], padding[2])
    return dx


# ---------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) transforms, same contract as the reference ones. Transformed tiles are
# viewed as (4, 4, N, TH, TW, C). Each 4x4 transform is done as two passes of a 4-point
# transform (columns, then rows), with channels innermost so that every pass vectorizes.
# ---------------------------------------------------------------------------------------------

from .reference import winograd_tiles  # noqa: E402  (kept beside the section that uses it)


@njit(inline="always")
def _bt4(a0, a1, a2, a3):  # B^T times a 4-vector
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@njit(inline="always")
def _b4(a0, a1, a2, a3):  # B times a 4-vector (the adjoint of _bt4)
    return a0, a1 - a2 + a3, a1 + a2 - a0, -a3


@njit(inline="always")
def _at4(a0, a1, a2, a3):  # A^T times a 4-vector
    return a0 + a1 + a2, a1 - a2 - a3


@njit(inline="always")
def _a2(a0, a1):  # A times a 2-vector (the adjoint of _at4)
    return a0, a0 + a1, a0 - a1, -a1


@njit(parallel=True, cache=True)
def _winograd_input(x, v, top, left):
    n, h, w, c = x.shape
    th, tw = v.shape[3], v.shape[4]
    for b in prange(n * th):  # one tile row per task
        nn, ty = b // th, b % th
        d = np.empty((4, 4, c), dtype=x.dtype)
        t = np.empty((4, 4, c), dtype=x.dtype)
        for tx in range(tw):
            for r in range(4):
                row = 2 * ty + r - top
                for s in range(4):
                    col = 2 * tx + s - left
                    inside = 0 <= row < h and 0 <= col < w
                    for ch in range(c):
                        d[r, s, ch] = x[nn, row, col, ch] if inside else 0.0
            for s in range(4):  # t = B^T d
                for ch in range(c):
                    t0, t1, t2, t3 = _bt4(d[0, s, ch], d[1, s, ch], d[2, s, ch], d[3, s, ch])
                    t[0, s, ch], t[1, s, ch], t[2, s, ch], t[3, s, ch] = t0, t1, t2, t3
            for i in range(4):  # v = t B
                for ch in range(c):
                    v0, v1, v2, v3 = _bt4(t[i, 0, ch], t[i, 1, ch], t[i, 2, ch], t[i, 3, ch])
                    v[i, 0, nn, ty, tx, ch], v[i, 1, nn, ty, tx, ch] = v0, v1
                    v[i, 2, nn, ty, tx, ch], v[i, 3, nn, ty, tx, ch] = v2, v3


@njit(parallel=True, cache=True)
def _winograd_input_adjoint(dv, dx, top, left):
    n, h, w, c = dx.shape
    th, tw = dv.shape[3], dv.shape[4]
    for nn in prange(n):  # one image per task: tiles overlap only within an image
        u = np.empty((4, 4, c), dtype=dx.dtype)
        dd = np.empty((4, c), dtype=dx.dtype)
        for row in range(h):
            for col in range(w):
                for ch in range(c):
                    dx[nn, row, col, ch] = 0.0
        for ty in range(th):
            for tx in range(tw):
                for j in range(4):  # u = B dV
                    for ch in range(c):
                        u0, u1, u2, u3 = _b4(dv[0, j, nn, ty, tx, ch], dv[1, j, nn, ty, tx, ch],
                                             dv[2, j, nn, ty, tx, ch], dv[3, j, nn, ty, tx, ch])
                        u[0, j, ch], u[1, j, ch], u[2, j, ch], u[3, j, ch] = u0, u1, u2, u3
                for r in range(4):  # row r of u B^T, added to the input pixels the tile covers
                    row = 2 * ty + r - top
                    if row < 0 or row >= h:
                        continue
                    for ch in range(c):
                        d0, d1, d2, d3 = _b4(u[r, 0, ch], u[r, 1, ch], u[r, 2, ch], u[r, 3, ch])
                        dd[0, ch], dd[1, ch], dd[2, ch], dd[3, ch] = d0, d1, d2, d3
                    for s in range(4):
                        col = 2 * tx + s - left
                        if 0 <= col < w:
                            for ch in range(c):
                                dx[nn, row, col, ch] += dd[s, ch]


@njit(parallel=True, cache=True)
def _winograd_output(m, bias, y):
    n, oh, ow, f = y.shape
    th, tw = m.shape[3], m.shape[4]
    for b in prange(n * th):
        nn, ty = b // th, b % th
        t = np.empty((2, 4, f), dtype=y.dtype)
        for tx in range(tw):
            for s in range(4):  # t = A^T m
                for ch in range(f):
                    t0, t1 = _at4(m[0, s, nn, ty, tx, ch], m[1, s, nn, ty, tx, ch],
                                  m[2, s, nn, ty, tx, ch], m[3, s, nn, ty, tx, ch])
                    t[0, s, ch], t[1, s, ch] = t0, t1
            for a in range(2):  # y = t A + bias, dropping outputs past the edge
                row = 2 * ty + a
                col = 2 * tx
                if row >= oh:
                    continue
                if col + 1 < ow:
                    for ch in range(f):
                        y0, y1 = _at4(t[a, 0, ch], t[a, 1, ch], t[a, 2, ch], t[a, 3, ch])
                        y[nn, row, col, ch] = y0 + bias[ch]
                        y[nn, row, col + 1, ch] = y1 + bias[ch]
                else:
                    for ch in range(f):
                        y0, _ = _at4(t[a, 0, ch], t[a, 1, ch], t[a, 2, ch], t[a, 3, ch])
                        y[nn, row, col, ch] = y0 + bias[ch]


@njit(parallel=True, cache=True)
def _winograd_output_adjoint(dy, dm):
    n, oh, ow, f = dy.shape
    th, tw = dm.shape[3], dm.shape[4]
    for b in prange(n * th):
        nn, ty = b // th, b % th
        e = np.empty((2, 2, f), dtype=dy.dtype)
        u = np.empty((2, 4, f), dtype=dy.dtype)
        for tx in range(tw):
            for a in range(2):  # the 2x2 output-gradient tile, zero past the edge
                for bb in range(2):
                    row, col = 2 * ty + a, 2 * tx + bb
                    inside = row < oh and col < ow
                    for ch in range(f):
                        e[a, bb, ch] = dy[nn, row, col, ch] if inside else 0.0
            for a in range(2):  # u = e A^T
                for ch in range(f):
                    u0, u1, u2, u3 = _a2(e[a, 0, ch], e[a, 1, ch])
                    u[a, 0, ch], u[a, 1, ch], u[a, 2, ch], u[a, 3, ch] = u0, u1, u2, u3
            for s in range(4):  # dm = A u
                for ch in range(f):
                    d0, d1, d2, d3 = _a2(u[0, s, ch], u[1, s, ch])
                    dm[0, s, nn, ty, tx, ch], dm[1, s, nn, ty, tx, ch] = d0, d1
                    dm[2, s, nn, ty, tx, ch], dm[3, s, nn, ty, tx, ch] = d2, d3


def winograd_input_transform(x, padding, tiles):
    n, _, _, c = x.shape
    th, tw = tiles
    v = np.empty((16, n * th * tw, c), dtype=x.dtype)
    _winograd_input(np.ascontiguousarray(x), v.reshape(4, 4, n, th, tw, c), padding[0], padding[2])
    return v


def winograd_input_transform_adjoint(dv, x_shape, padding, tiles):
    n, _, _, c = x_shape
    dx = np.empty(x_shape, dtype=dv.dtype)
    dv6 = np.ascontiguousarray(dv).reshape(4, 4, n, tiles[0], tiles[1], c)
    _winograd_input_adjoint(dv6, dx, padding[0], padding[2])
    return dx


def winograd_output_transform(m, out_shape, bias):
    n, oh, ow, f = out_shape
    th, tw = winograd_tiles(oh, ow)
    y = np.empty(out_shape, dtype=m.dtype)
    bias = np.broadcast_to(np.asarray(bias, dtype=m.dtype), (f,))
    _winograd_output(np.ascontiguousarray(m).reshape(4, 4, n, th, tw, f), np.ascontiguousarray(bias), y)
    return y


def winograd_output_transform_adjoint(dy):
    n, oh, ow, f = dy.shape
    th, tw = winograd_tiles(oh, ow)
    dm = np.empty((16, n * th * tw, f), dtype=dy.dtype)
    _winograd_output_adjoint(np.ascontiguousarray(dy), dm.reshape(4, 4, n, th, tw, f))
    return dm


@njit(parallel=True, cache=True)
def _leaky_relu_forward(x, y, alpha):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * alpha


@njit(parallel=True, cache=True)
def _leaky_relu_backward(dy, y, dx, alpha):
    for i in prange(dy.size):
        dx[i] = dy[i] if y[i] > 0 else dy[i] * alpha


def leaky_relu_forward(x, alpha):
    y = np.empty_like(x)
    _leaky_relu_forward(x.reshape(-1), y.reshape(-1), x.dtype.type(alpha))
    return y


def leaky_relu_backward(dy, y, alpha):
    dx = np.empty_like(dy)
    _leaky_relu_backward(np.ascontiguousarray(dy).reshape(-1), y.reshape(-1), dx.reshape(-1),
                         dy.dtype.type(alpha))
    return dx


@njit(parallel=True, cache=True)
def _adam_update(w, g, m, v, step_size, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, epsilon):
    # One pass over memory instead of the eight temporaries the array expression makes.
    for i in prange(w.size):
        m[i] = beta_1 * m[i] + one_minus_beta_1 * g[i]
        v[i] = beta_2 * v[i] + one_minus_beta_2 * g[i] * g[i]
        w[i] -= step_size * m[i] / (np.sqrt(v[i]) + epsilon)


def adam_update(w, g, m, v, step_size, beta_1, beta_2, epsilon):
    t = w.dtype.type
    _adam_update(w.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
                 t(step_size), t(beta_1), t(1 - beta_1), t(beta_2), t(1 - beta_2), t(epsilon))


# ---------------------------------------------------------------------------------------------
# Affine warp: one bilinear resampling pass per image, parallel over the batch (serial for small
# batches, see PARALLEL_MIN_PIXELS). Same contract and fill modes as reference.affine_warp (which
# explains them); mode codes index FILL_MODES.
# ---------------------------------------------------------------------------------------------

from .reference import check_fill_mode  # noqa: E402  (kept beside the section that uses it)

_NEAREST, _CONSTANT, _REFLECT, _WRAP = 0, 1, 2, 3


@njit(cache=True)
def _wrap_coordinate(coord, n):
    if n == 1:
        return 0.0
    period = n - 1
    if coord < 0:
        return coord + period * (np.floor(-coord / period) + 1)
    if coord > period:
        return coord - period * np.floor(coord / period)
    return coord


@njit(cache=True)
def _fold_index(i, n, mode):
    if mode == _REFLECT:
        i = i % (2 * n)  # numba follows Python: the result is non-negative
        return 2 * n - 1 - i if i >= n else i
    return min(max(i, 0), n - 1)


@njit(cache=True)
def _warp_image(images, t, out, b, mode, cval):
    """Output image b: each pixel samples the input at t @ (row, col, 1), bilinearly."""
    _, h, w, c = images.shape
    for row in range(h):
        for col in range(w):
            src_r = t[0, 0] * row + t[0, 1] * col + t[0, 2]
            src_c = t[1, 0] * row + t[1, 1] * col + t[1, 2]
            if mode == _WRAP:
                src_r = _wrap_coordinate(src_r, h)
                src_c = _wrap_coordinate(src_c, w)
            if mode == _CONSTANT and not (0.0 <= src_r <= h - 1 and 0.0 <= src_c <= w - 1):
                for ch in range(c):
                    out[b, row, col, ch] = cval
                continue
            lower_r = np.floor(src_r)
            lower_c = np.floor(src_c)
            wr = src_r - lower_r
            wc = src_c - lower_c
            r0 = _fold_index(int(lower_r), h, mode)
            r1 = _fold_index(int(lower_r) + 1, h, mode)
            c0 = _fold_index(int(lower_c), w, mode)
            c1 = _fold_index(int(lower_c) + 1, w, mode)
            for ch in range(c):
                v = ((1.0 - wr) * (1.0 - wc) * images[b, r0, c0, ch] + (1.0 - wr) * wc * images[b, r0, c1, ch]
                     + wr * (1.0 - wc) * images[b, r1, c0, ch] + wr * wc * images[b, r1, c1, ch])
                out[b, row, col, ch] = v


@njit(parallel=True, cache=True)
def _affine_warp(images, transforms, out, mode, cval):
    for b in prange(images.shape[0]):  # one image per task: tasks never write the same place
        _warp_image(images, transforms[b], out, b, mode, cval)


@njit(cache=True)
def _affine_warp_serial(images, transforms, out, mode, cval):
    for b in range(images.shape[0]):
        _warp_image(images, transforms[b], out, b, mode, cval)


# Below this many output pixels (N * H * W) one thread is faster: a batch of 32 images of 32 x 32
# takes about 0.6 ms on one core, while waking a second thread costs as much, and up to several
# ms when the other core is busy (the threads wait for each other at the end of the loop).
PARALLEL_MIN_PIXELS = 2 ** 17


def affine_warp(images, transforms, fill_mode="nearest", cval=0.0):
    mode = check_fill_mode(fill_mode)
    out = np.empty(images.shape, dtype=np.float32)
    n, h, w, _ = images.shape
    kernel = _affine_warp if n * h * w >= PARALLEL_MIN_PIXELS else _affine_warp_serial
    kernel(np.ascontiguousarray(images, dtype=np.float32),
           np.ascontiguousarray(transforms, dtype=np.float64), out, mode, float(cval))
    return out
