"""numba kernels for the CPU: the same functions as ``reference.py``, parallel over the batch (the
Winograd transforms excepted: their caller runs them in parallel, on blocks of images).

Each public function has the reference signature; the ``_jit`` helpers do the work on
preallocated outputs. The first call compiles (seconds); the machine code is kept on disk for
later runs (where: see ``compile_cache.py``). ``NUMBA_DISABLE_JIT=1`` turns these into plain Python for a debugger.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .compile_cache import cache_enabled
from .products import column_sums, matmul  # noqa: F401  (the products' split lives in its own file)
from .geometry import window_output

CACHE = cache_enabled()  # before the first decorator: with nowhere to write, cache=CACHE fails inside numba


@njit(parallel=True, cache=CACHE)
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


@njit(parallel=True, cache=CACHE)
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


@njit(parallel=True, cache=CACHE)
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
                        best = y[nn, r, q, ch]
                        # Strict: the first maximum wins a tie. A NaN (v != v) beats numbers and
                        # the first NaN stays: the reference's argmax rule.
                        if v > best or (v != v and best == best):
                            y[nn, r, q, ch] = v
                            argmax[nn, r, q, ch] = i * pw + j


@njit(parallel=True, cache=CACHE)
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


def im2col(x, window):
    kernel_size, strides, padding = window
    n, _, _, c = x.shape
    kh, kw = kernel_size
    oh, ow = window_output(x.shape, window)
    out = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), out.reshape(n, oh, ow, kh, kw, c), kh, kw, strides[0], strides[1],
            padding[0], padding[2])
    return out


def col2im(cols, x_shape, window):
    kernel_size, strides, padding = window
    n, _, _, c = x_shape
    kh, kw = kernel_size
    oh, ow = window_output(x_shape, window)
    dx = np.empty(x_shape, dtype=cols.dtype)
    cols6 = np.ascontiguousarray(cols).reshape(n, oh, ow, kh, kw, c)
    _col2im(cols6, dx, strides[0], strides[1], padding[0], padding[2])
    return dx


def maxpool_forward(x, window):
    pool_size, strides, padding = window
    n, _, _, c = x.shape
    oh, ow = window_output(x.shape, window)
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    argmax = np.empty((n, oh, ow, c), dtype=np.int32)
    _maxpool_forward(np.ascontiguousarray(x), y, argmax, pool_size[0], pool_size[1],
                     strides[0], strides[1], padding[0], padding[2])
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, window):
    pool_size, strides, padding = window
    dx = np.empty(x_shape, dtype=dy.dtype)
    _maxpool_backward(np.ascontiguousarray(dy), argmax, dx, pool_size[0], pool_size[1],
                      strides[0], strides[1], padding[0], padding[2])
    return dx


# ---------------------------------------------------------------------------------------------
# Winograd transforms, same contract as the reference ones (any tile size up to TILE_TERMS). The
# transformed tiles are viewed as (a, a, N, TH, TW, C). Per tile, each transform is two small
# matrix products, P @ tile then tile @ Q^T, with channels innermost so they vectorize. These
# kernels are serial and release the GIL: Conv2D's Winograd runs them on blocks of a few images
# from the product pool's threads (``layers/winograd.py``), so that a block's tiles stay in one
# core's cache from the input transform to the output transform.
#
# The transform matrix is a constant of the compiled code, not an argument: each matrix gets its
# own kernel (compiled once, kept on disk like the others), and the products are written out
# term by term, so every coefficient is a number the compiler sees. It then drops the terms with
# coefficient 0 (more than a third of F(4x4)'s), multiplies by +-1 for free, and keeps the
# coefficients in registers: the four transforms of a 3-image block of the seed CNN's 64-channel
# layer at 32x32 take 0.63 ms instead of 1.03 (docs/performance.md). Dropping a 0 term needs
# fastmath's "no NaN, no inf, no signed zero" (IEEE says 0 * inf is NaN); the dropped terms are
# exact zeros for finite data, so finite results are those of the full sums bit for bit (but for
# the sign of a zero), and a NaN or inf in a tile still reaches every entry a nonzero coefficient
# links it to (tests/test_kernels.py holds both). A matrix with fewer rows or columns than
# TILE_TERMS is padded with zeros, and the tile buffers are zero past the tile: the extra terms
# are zeros, dropped alike.
# ---------------------------------------------------------------------------------------------

from .reference import winograd_tiles  # noqa: E402  (kept beside the section that uses it)

TILE_TERMS = 8  # the largest tile side a, F(6x6, 3x3)'s: every matrix is padded to 8 x 8
ZERO_TERMS_DROPPED = {"nnan", "ninf", "nsz"}  # the fastmath flags that let the compiler drop 0 * x


def _terms(a: int) -> int:
    """The side of a kernel's tile buffers: 6 up to F(4x4) (three 6 x 6 x 64 buffers fit a 32 KiB
    L1 cache, 8 x 8 ones do not), 8 for F(6x6)."""
    return 6 if a <= 6 else TILE_TERMS


@njit(inline="always", fastmath=ZERO_TERMS_DROPPED)
def _dot(p, i, t0, t1, t2, t3, t4, t5, t6, t7):
    """sum_r p[i, r] t_r over the TILE_TERMS terms, written out."""
    return (p[i, 0] * t0 + p[i, 1] * t1 + p[i, 2] * t2 + p[i, 3] * t3 + p[i, 4] * t4 + p[i, 5] * t5
            + p[i, 6] * t6 + p[i, 7] * t7)


@njit(inline="always", fastmath=ZERO_TERMS_DROPPED)
def _left_multiply(p, tile, out, cols, terms):
    """out[i, s, :] = sum_r p[i, r] * tile[r, s, :] for every row i < terms and the columns s < cols.

    ``terms`` (6 or 8) is a constant of the calling kernel: its tests fold away. In a 6-term tile
    the reads of rows 6 and 7 are clamped to row 5, whose coefficient there is 0: dropped.
    """
    for s in range(cols):
        for ch in range(tile.shape[2]):
            t0, t1, t2 = tile[0, s, ch], tile[1, s, ch], tile[2, s, ch]
            t3, t4, t5 = tile[3, s, ch], tile[4, s, ch], tile[5, s, ch]
            t6, t7 = tile[min(6, terms - 1), s, ch], tile[terms - 1, s, ch]
            out[0, s, ch] = _dot(p, 0, t0, t1, t2, t3, t4, t5, t6, t7)
            out[1, s, ch] = _dot(p, 1, t0, t1, t2, t3, t4, t5, t6, t7)
            out[2, s, ch] = _dot(p, 2, t0, t1, t2, t3, t4, t5, t6, t7)
            out[3, s, ch] = _dot(p, 3, t0, t1, t2, t3, t4, t5, t6, t7)
            out[4, s, ch] = _dot(p, 4, t0, t1, t2, t3, t4, t5, t6, t7)
            out[5, s, ch] = _dot(p, 5, t0, t1, t2, t3, t4, t5, t6, t7)
            if terms == 8:
                out[6, s, ch] = _dot(p, 6, t0, t1, t2, t3, t4, t5, t6, t7)
                out[7, s, ch] = _dot(p, 7, t0, t1, t2, t3, t4, t5, t6, t7)


@njit(inline="always", fastmath=ZERO_TERMS_DROPPED)
def _right_multiply(tile, q, out, rows, terms):
    """out[i, j, :] = sum_s tile[i, s, :] * q[j, s] for the rows i < rows and every column j < terms.

    The left product on the tile's other axis, written out: calling ``_left_multiply`` on transposed
    views hides the unit channel stride from numba and made the transforms 2x slower.
    """
    for i in range(rows):
        for ch in range(tile.shape[2]):
            t0, t1, t2 = tile[i, 0, ch], tile[i, 1, ch], tile[i, 2, ch]
            t3, t4, t5 = tile[i, 3, ch], tile[i, 4, ch], tile[i, 5, ch]
            t6, t7 = tile[i, min(6, terms - 1), ch], tile[i, terms - 1, ch]
            out[i, 0, ch] = _dot(q, 0, t0, t1, t2, t3, t4, t5, t6, t7)
            out[i, 1, ch] = _dot(q, 1, t0, t1, t2, t3, t4, t5, t6, t7)
            out[i, 2, ch] = _dot(q, 2, t0, t1, t2, t3, t4, t5, t6, t7)
            out[i, 3, ch] = _dot(q, 3, t0, t1, t2, t3, t4, t5, t6, t7)
            out[i, 4, ch] = _dot(q, 4, t0, t1, t2, t3, t4, t5, t6, t7)
            out[i, 5, ch] = _dot(q, 5, t0, t1, t2, t3, t4, t5, t6, t7)
            if terms == 8:
                out[i, 6, ch] = _dot(q, 6, t0, t1, t2, t3, t4, t5, t6, t7)
                out[i, 7, ch] = _dot(q, 7, t0, t1, t2, t3, t4, t5, t6, t7)


@njit(inline="always")
def _tile_buffers(channels, dtype, terms):
    """Three terms x terms x channels tiles, zero past the tile for good."""
    return (np.zeros((terms, terms, channels), dtype=dtype), np.zeros((terms, terms, channels), dtype=dtype),
            np.zeros((terms, terms, channels), dtype=dtype))


def _input_kernel(bt, terms):
    """x (N, H, W, C) -> v: the tiles B^T d B, for this B^T."""
    @njit(nogil=True, cache=CACHE, fastmath=ZERO_TERMS_DROPPED)
    def transform(x, v, top, left):
        n, h, w, c = x.shape
        a, th, tw = v.shape[0], v.shape[3], v.shape[4]
        m = a - 2
        for b in range(n * th):  # one tile row after the other
            nn, ty = b // th, b % th
            d, t, u = _tile_buffers(c, x.dtype, terms)
            for tx in range(tw):
                for r in range(a):
                    row = m * ty + r - top
                    for s in range(a):
                        col = m * tx + s - left
                        inside = 0 <= row < h and 0 <= col < w
                        for ch in range(c):
                            d[r, s, ch] = x[nn, row, col, ch] if inside else 0.0
                _left_multiply(bt, d, t, a, terms)  # B^T d
                _right_multiply(t, bt, u, a, terms)  # (B^T d) B
                for i in range(a):
                    for j in range(a):
                        for ch in range(c):
                            v[i, j, nn, ty, tx, ch] = u[i, j, ch]
    return transform


def _input_adjoint_kernel(b_, terms):
    """dv -> dx: each tile's B dV B^T added to the pixels it covers, for this B = (B^T)^T."""
    @njit(nogil=True, cache=CACHE, fastmath=ZERO_TERMS_DROPPED)
    def transform(dv, dx, top, left):
        n, h, w, c = dx.shape
        a, th, tw = dv.shape[0], dv.shape[3], dv.shape[4]
        m = a - 2
        for nn in range(n):
            g, t, dd = _tile_buffers(c, dx.dtype, terms)
            for row in range(h):
                for col in range(w):
                    for ch in range(c):
                        dx[nn, row, col, ch] = 0.0
            for ty in range(th):
                for tx in range(tw):
                    for i in range(a):
                        for j in range(a):
                            for ch in range(c):
                                g[i, j, ch] = dv[i, j, nn, ty, tx, ch]
                    _left_multiply(b_, g, t, a, terms)  # B dV
                    _right_multiply(t, b_, dd, a, terms)  # (B dV) B^T
                    for r in range(a):  # added to the input pixels the tile covers
                        row = m * ty + r - top
                        if row < 0 or row >= h:
                            continue
                        for s in range(a):
                            col = m * tx + s - left
                            if 0 <= col < w:
                                for ch in range(c):
                                    dx[nn, row, col, ch] += dd[r, s, ch]
    return transform


def _output_kernel(at, terms):
    """products -> y: A^T M A + bias, the outputs past the edge dropped, for this A^T."""
    @njit(nogil=True, cache=CACHE, fastmath=ZERO_TERMS_DROPPED)
    def transform(products, bias, y):
        n, oh, ow, f = y.shape
        a, th, tw = products.shape[0], products.shape[3], products.shape[4]
        m = a - 2
        for b in range(n * th):
            nn, ty = b // th, b % th
            g, t, out = _tile_buffers(f, y.dtype, terms)
            for tx in range(tw):
                for i in range(a):
                    for j in range(a):
                        for ch in range(f):
                            g[i, j, ch] = products[i, j, nn, ty, tx, ch]
                _left_multiply(at, g, t, a, terms)  # A^T M (its rows past m are zero)
                _right_multiply(t, at, out, m, terms)  # (A^T M) A
                for r in range(min(m, oh - m * ty)):  # dropping outputs past the edge
                    for s in range(min(m, ow - m * tx)):
                        for ch in range(f):
                            y[nn, m * ty + r, m * tx + s, ch] = out[r, s, ch] + bias[ch]
    return transform


def _output_adjoint_kernel(a_, terms):
    """dy -> dm: the tiles A dY A^T, zero past the edge, for this A = (A^T)^T."""
    @njit(nogil=True, cache=CACHE, fastmath=ZERO_TERMS_DROPPED)
    def transform(dy, dm):
        n, oh, ow, f = dy.shape
        a, th, tw = dm.shape[0], dm.shape[3], dm.shape[4]
        m = a - 2
        for b in range(n * th):
            nn, ty = b // th, b % th
            e, t, g = _tile_buffers(f, dy.dtype, terms)
            for tx in range(tw):
                for r in range(m):  # the m x m output-gradient tile, zero past the edge
                    for s in range(m):
                        row, col = m * ty + r, m * tx + s
                        inside = row < oh and col < ow
                        for ch in range(f):
                            e[r, s, ch] = dy[nn, row, col, ch] if inside else 0.0
                _left_multiply(a_, e, t, m, terms)  # A dY
                _right_multiply(t, a_, g, a, terms)  # (A dY) A^T
                for i in range(a):
                    for j in range(a):
                        for ch in range(f):
                            dm[i, j, nn, ty, tx, ch] = g[i, j, ch]
    return transform


_COMPILED = {}  # (kernel maker, dtype, shape, the matrix's bytes) -> its kernel


def _kernel(maker, matrix, dtype):
    """The kernel ``maker`` builds around ``matrix`` in ``dtype`` (padded with zeros to
    TILE_TERMS x TILE_TERMS), built on first use."""
    key = (maker, np.dtype(dtype), matrix.shape, np.asarray(matrix, dtype=dtype).tobytes())
    if key not in _COMPILED:
        rows, cols = matrix.shape
        if max(rows, cols) > TILE_TERMS:
            raise ValueError(f"Winograd tiles of side {max(rows, cols)} are larger than the kernels' "
                             f"TILE_TERMS = {TILE_TERMS}")
        padded = np.zeros((TILE_TERMS, TILE_TERMS), dtype=dtype)
        padded[:rows, :cols] = matrix
        _COMPILED[key] = maker(padded, _terms(max(rows, cols)))
    return _COMPILED[key]


def winograd_input_transform(x, padding, tiles, bt):
    n, _, _, c = x.shape
    a, (th, tw) = bt.shape[0], tiles
    v = np.empty((a * a, n * th * tw, c), dtype=x.dtype)
    _kernel(_input_kernel, bt, x.dtype)(np.ascontiguousarray(x), v.reshape(a, a, n, th, tw, c),
                                        padding[0], padding[2])
    return v


def winograd_input_transform_adjoint(dv, x_shape, padding, tiles, bt, out=None):
    n, _, _, c = x_shape
    a = bt.shape[0]
    dx = np.empty(x_shape, dtype=dv.dtype) if out is None else out
    dv6 = np.ascontiguousarray(dv).reshape(a, a, n, tiles[0], tiles[1], c)
    _kernel(_input_adjoint_kernel, bt.T, dv.dtype)(dv6, dx, padding[0], padding[2])
    return dx


def winograd_output_transform(products, out_shape, bias, at, out=None):
    n, oh, ow, f = out_shape
    m, a = at.shape
    th, tw = winograd_tiles(oh, ow, m)
    y = np.empty(out_shape, dtype=products.dtype) if out is None else out
    bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, dtype=products.dtype), (f,)))
    _kernel(_output_kernel, at, products.dtype)(np.ascontiguousarray(products).reshape(a, a, n, th, tw, f), bias, y)
    return y


def winograd_output_transform_adjoint(dy, at):
    n, oh, ow, f = dy.shape
    m, a = at.shape
    th, tw = winograd_tiles(oh, ow, m)
    dm = np.empty((a * a, n * th * tw, f), dtype=dy.dtype)
    _kernel(_output_adjoint_kernel, at.T, dy.dtype)(np.ascontiguousarray(dy), dm.reshape(a, a, n, th, tw, f))
    return dm


@njit(parallel=True, cache=CACHE)
def _leaky_relu_forward(x, y, alpha):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * alpha


@njit(parallel=True, cache=CACHE)
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


@njit(parallel=True, cache=CACHE)
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
# Batch normalization over (M, C) rows, same contract as the reference. The per-channel sums run
# over fixed chunks of rows in parallel, each chunk into its own row of partial sums (no race),
# accumulated in float64; the chunk count does not depend on the thread count, so the result
# does not either. The element-wise passes are parallel over rows, channels innermost.
# ---------------------------------------------------------------------------------------------

BATCHNORM_CHUNKS = 64


@njit(parallel=True, cache=CACHE)
def _chunk_sums(a, b, chunks, partial_a, partial_ab):
    """partial_a[k] = sum of a over the rows of chunk k, partial_ab[k] = sum of a * b (for the
    backward pass: sum dy and sum dy * x_hat)."""
    m, c = a.shape
    size = (m + chunks - 1) // chunks
    for k in prange(chunks):
        for ch in range(c):
            partial_a[k, ch] = 0.0
            partial_ab[k, ch] = 0.0
        for i in range(k * size, min(m, (k + 1) * size)):
            for ch in range(c):
                partial_a[k, ch] += a[i, ch]
                partial_ab[k, ch] += a[i, ch] * b[i, ch]


@njit(parallel=True, cache=CACHE)
def _centered_square_sums(x, mean, chunks, partial):
    m, c = x.shape
    size = (m + chunks - 1) // chunks
    for k in prange(chunks):
        for ch in range(c):
            partial[k, ch] = 0.0
        for i in range(k * size, min(m, (k + 1) * size)):
            for ch in range(c):
                d = x[i, ch] - mean[ch]
                partial[k, ch] += d * d


@njit(parallel=True, cache=CACHE)
def _batchnorm_apply(x, mean, inv_std, gamma, beta, y, x_hat):
    m, c = x.shape
    for i in prange(m):
        for ch in range(c):
            h = (x[i, ch] - mean[ch]) * inv_std[ch]
            x_hat[i, ch] = h
            y[i, ch] = gamma[ch] * h + beta[ch]


@njit(parallel=True, cache=CACHE)
def _batchnorm_input_gradient(dy, x_hat, scale, mean_dy, mean_dy_x_hat, dx):
    m, c = dy.shape
    for i in prange(m):
        for ch in range(c):
            dx[i, ch] = scale[ch] * (dy[i, ch] - mean_dy[ch] - x_hat[i, ch] * mean_dy_x_hat[ch])


def batchnorm_statistics(x):
    x = np.ascontiguousarray(x)
    m, c = x.shape
    chunks = min(m, BATCHNORM_CHUNKS)
    partial, squares = np.empty((chunks, c)), np.empty((chunks, c))
    _chunk_sums(x, x, chunks, partial, squares)  # the raw squares go unused: see below
    mean = partial.sum(axis=0) / m
    # Two passes: squares of centred values, which keeps the variance accurate in float32.
    _centered_square_sums(x, mean, chunks, partial)
    return mean.astype(x.dtype), (partial.sum(axis=0) / m).astype(x.dtype)


def batchnorm_forward(x, mean, inv_std, gamma, beta):
    x = np.ascontiguousarray(x)
    y, x_hat = np.empty_like(x), np.empty_like(x)
    t = x.dtype
    _batchnorm_apply(x, mean.astype(t), inv_std.astype(t), gamma.astype(t), beta.astype(t), y, x_hat)
    return y, x_hat


def batchnorm_backward(dy, x_hat, scale, batch_statistics):
    dy = np.ascontiguousarray(dy)
    m, c = dy.shape
    chunks = min(m, BATCHNORM_CHUNKS)
    partial_dy, partial_dy_x_hat = np.empty((chunks, c)), np.empty((chunks, c))
    _chunk_sums(dy, np.ascontiguousarray(x_hat), chunks, partial_dy, partial_dy_x_hat)
    dbeta, dgamma = partial_dy.sum(axis=0), partial_dy_x_hat.sum(axis=0)
    t = dy.dtype
    dx = np.empty_like(dy)
    if batch_statistics:
        _batchnorm_input_gradient(dy, x_hat, scale.astype(t), (dbeta / m).astype(t), (dgamma / m).astype(t), dx)
    else:
        _batchnorm_input_gradient(dy, x_hat, scale.astype(t), np.zeros(c, t), np.zeros(c, t), dx)
    return dx, dgamma.astype(t), dbeta.astype(t)


# ---------------------------------------------------------------------------------------------
# Affine warp: one bilinear resampling pass per image, parallel over the batch (serial for small
# batches, see PARALLEL_MIN_PIXELS). Same contract and fill modes as reference.affine_warp (which
# explains them); mode codes index FILL_MODES.
# ---------------------------------------------------------------------------------------------

from .reference import check_fill_mode  # noqa: E402  (kept beside the section that uses it)

_NEAREST, _CONSTANT, _REFLECT, _WRAP = 0, 1, 2, 3


@njit(cache=CACHE)
def _wrap_coordinate(coord, n):
    if n == 1:
        return 0.0
    period = n - 1
    if coord < 0:
        return coord + period * (np.floor(-coord / period) + 1)
    if coord > period:
        return coord - period * np.floor(coord / period)
    return coord


@njit(cache=CACHE)
def _fold_index(i, n, mode):
    if mode == _REFLECT:
        i = i % (2 * n)  # numba follows Python: the result is non-negative
        return 2 * n - 1 - i if i >= n else i
    return min(max(i, 0), n - 1)


@njit(cache=CACHE)
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


@njit(parallel=True, cache=CACHE)
def _affine_warp(images, transforms, out, mode, cval):
    for b in prange(images.shape[0]):  # one image per task: tasks never write the same place
        _warp_image(images, transforms[b], out, b, mode, cval)


@njit(cache=CACHE)
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
