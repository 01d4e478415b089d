"""CUDA kernels for CuPy arrays: the same functions and contracts as ``reference.py``.

Each kernel maps one GPU thread to one element (of the output for im2col, max-pool forward and
the warp; of the *input gradient* for col2im and max-pool backward). The backward kernels are
written as gathers: each thread sums the few window entries that touch its own element, so no
two threads write the same place, no atomics are needed and the summation order is fixed (the
same order as ``cpu.py``, which makes results reproducible run to run).

Indices are ``long long`` throughout: an im2col buffer has ``N*OH*OW*KH*KW*C`` elements, which
passes 2**31 for large batches, and a 32-bit flat index would silently wrap. Kernels walk their
elements with a grid-stride loop, so a bounded grid covers any size (see ``launch_config``).

The CUDA source is compiled once, on first use, for float32 and float64 (one C++ template per
kernel, called by one ``extern "C"`` entry point per type, such as ``im2col_float``). Plain C
names let CuPy load the compiled module from its disk cache in later processes: it compiles
again whenever it has to look up C++ (mangled) names. Matrix products and column sums are the
reference's: ``cupy.matmul`` runs them on cuBLAS.

CuPy compiles every kernel with ``-ftz=true``: float32 subnormals (below about 1.2e-38) are
read and written as 0 on the GPU, where NumPy and numba keep them. float64 is not affected.

CuPy is imported inside the functions, so importing this module never needs it.
"""
from __future__ import annotations

import numpy as np

# LeakyReLU and BatchNormalization have no CUDA version here: the reference ones are written with
# get_array_module, so CuPy runs them as they are (a few small CuPy kernels per call).
from .reference import column_sums, leaky_relu_backward, leaky_relu_forward, matmul  # noqa: F401
from .reference import batchnorm_backward, batchnorm_forward, batchnorm_statistics  # noqa: F401
from .reference import _windows_shape, check_fill_mode

THREADS_PER_BLOCK = 256
# 65535 blocks of 256 threads keep every SM of any current GPU busy; grid-stride loops do the rest.
MAX_BLOCKS = 65535

_SOURCE = r"""
// Flat element index of this thread, then every (blockDim * gridDim)-th element after it:
// a bounded grid covers any total, and the index is 64-bit so N*OH*OW*KH*KW*C cannot wrap.
#define FOR_EACH_ELEMENT(idx, total)                                                   \
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < (total); \
         idx += (long long)blockDim.x * gridDim.x)

// Max-pool padding: -inf never wins a window (no headers needed under NVRTC).
__device__ float negative_infinity(float) { return __int_as_float((int)0xff800000u); }
__device__ double negative_infinity(double) {
    return __longlong_as_double((long long)0xfff0000000000000ull);
}

// im2col: one thread per element of cols, seen as (N, OH, OW, KH, KW, C). Element
// (nn, r, q, i, j, ch) is input pixel (r*sh + i - top, q*sw + j - left), or 0 in the padding.
template <typename T>
__device__ void im2col(long long total, const T* x, T* cols,
                       long long h, long long w, long long c, long long oh, long long ow,
                       long long kh, long long kw, long long sh, long long sw,
                       long long top, long long left) {
    FOR_EACH_ELEMENT(idx, total) {
        long long rest = idx;
        const long long ch = rest % c;  rest /= c;
        const long long j = rest % kw;  rest /= kw;
        const long long i = rest % kh;  rest /= kh;
        const long long q = rest % ow;  rest /= ow;
        const long long r = rest % oh;
        const long long nn = rest / oh;
        const long long row = r * sh + i - top;
        const long long col = q * sw + j - left;
        const bool inside = 0 <= row && row < h && 0 <= col && col < w;
        cols[idx] = inside ? x[((nn * h + row) * w + col) * c + ch] : T(0);
    }
}

// col2im (the adjoint of im2col), as a gather: one thread per element of dx, seen as
// (N, H, W, C). Input row `row` is seen by kernel row i of window row r when
// r*sh + i - top == row, so for each i the thread solves for r and keeps it when it is an
// integer in [0, OH); likewise for columns. It sums those cols entries in (i, j) order.
template <typename T>
__device__ void col2im(long long total, const T* cols, T* dx,
                       long long h, long long w, long long c, long long oh, long long ow,
                       long long kh, long long kw, long long sh, long long sw,
                       long long top, long long left) {
    FOR_EACH_ELEMENT(idx, total) {
        const long long ch = idx % c;
        const long long col = (idx / c) % w;
        const long long row = (idx / (c * w)) % h;
        const long long nn = idx / (c * w * h);
        T sum = T(0);
        for (long long i = 0; i < kh; ++i) {
            const long long r_num = row + top - i;
            if (r_num < 0 || r_num % sh != 0) continue;
            const long long r = r_num / sh;
            if (r >= oh) continue;
            for (long long j = 0; j < kw; ++j) {
                const long long q_num = col + left - j;
                if (q_num < 0 || q_num % sw != 0) continue;
                const long long q = q_num / sw;
                if (q >= ow) continue;
                sum += cols[((((nn * oh + r) * ow + q) * kh + i) * kw + j) * c + ch];
            }
        }
        dx[idx] = sum;
    }
}

// Max-pool forward: one thread per output element (nn, r, q, ch) of y, seen as (N, OH, OW, C).
// It scans its (ph, pw) window, skipping padding, and keeps the first maximum (strict >), whose
// position i*pw + j inside the window goes to argmax. A NaN in the window makes the output NaN.
template <typename T>
__device__ void maxpool_forward(long long total, const T* x, T* y, int* argmax,
                                long long h, long long w, long long c, long long oh, long long ow,
                                long long ph, long long pw, long long sh, long long sw,
                                long long top, long long left) {
    FOR_EACH_ELEMENT(idx, total) {
        const long long ch = idx % c;
        const long long q = (idx / c) % ow;
        const long long r = (idx / (c * ow)) % oh;
        const long long nn = idx / (c * ow * oh);
        T best = negative_infinity(T(0));
        int best_k = 0;
        for (long long i = 0; i < ph; ++i) {
            const long long row = r * sh + i - top;
            if (row < 0 || row >= h) continue;
            for (long long j = 0; j < pw; ++j) {
                const long long col = q * sw + j - left;
                if (col < 0 || col >= w) continue;
                const T v = x[((nn * h + row) * w + col) * c + ch];
                // NaN (v != v) wins over numbers, the first NaN over later ones: NumPy's argmax.
                if (v > best || (v != v && best == best)) {
                    best = v;
                    best_k = (int)(i * pw + j);
                }
            }
        }
        y[idx] = best;
        argmax[idx] = best_k;
    }
}

// Max-pool backward, as a gather: one thread per element of dx, seen as (N, H, W, C). It visits
// the windows covering its pixel (solving for r and q as col2im does) and adds dy of each window
// whose argmax is this pixel's position i*pw + j in that window.
template <typename T>
__device__ void maxpool_backward(long long total, const T* dy, const int* argmax, T* dx,
                                 long long h, long long w, long long c, long long oh, long long ow,
                                 long long ph, long long pw, long long sh, long long sw,
                                 long long top, long long left) {
    FOR_EACH_ELEMENT(idx, total) {
        const long long ch = idx % c;
        const long long col = (idx / c) % w;
        const long long row = (idx / (c * w)) % h;
        const long long nn = idx / (c * w * h);
        T sum = T(0);
        for (long long i = 0; i < ph; ++i) {
            const long long r_num = row + top - i;
            if (r_num < 0 || r_num % sh != 0) continue;
            const long long r = r_num / sh;
            if (r >= oh) continue;
            for (long long j = 0; j < pw; ++j) {
                const long long q_num = col + left - j;
                if (q_num < 0 || q_num % sw != 0) continue;
                const long long q = q_num / sw;
                if (q >= ow) continue;
                const long long out = ((nn * oh + r) * ow + q) * c + ch;
                if (argmax[out] == i * pw + j) sum += dy[out];
            }
        }
        dx[idx] = sum;
    }
}

// The entry points: one extern "C" kernel per template and type (im2col_float, im2col_double,
// ...). Their plain names need no C++ name lookup, so CuPy loads the module from its disk cache.
#define WINDOW_PARAMS long long h, long long w, long long c, long long oh, long long ow,             \
    long long kh, long long kw, long long sh, long long sw, long long top, long long left
#define WINDOW_ARGS h, w, c, oh, ow, kh, kw, sh, sw, top, left
#define ENTRY_POINTS(T)                                                                            \
    extern "C" __global__ void im2col_##T(long long total, const T* x, T* cols, WINDOW_PARAMS) {    \
        im2col(total, x, cols, WINDOW_ARGS);                                                        \
    }                                                                                               \
    extern "C" __global__ void col2im_##T(long long total, const T* cols, T* dx, WINDOW_PARAMS) {   \
        col2im(total, cols, dx, WINDOW_ARGS);                                                       \
    }                                                                                               \
    extern "C" __global__ void maxpool_forward_##T(long long total, const T* x, T* y, int* argmax,  \
                                                   WINDOW_PARAMS) {                                 \
        maxpool_forward(total, x, y, argmax, WINDOW_ARGS);                                          \
    }                                                                                               \
    extern "C" __global__ void maxpool_backward_##T(long long total, const T* dy, const int* argmax, \
                                                    T* dx, WINDOW_PARAMS) {                         \
        maxpool_backward(total, dy, argmax, dx, WINDOW_ARGS);                                       \
    }
ENTRY_POINTS(float)
ENTRY_POINTS(double)

// Affine warp, fill modes as in reference.py (codes are positions in FILL_MODES).
#define NEAREST 0
#define CONSTANT 1
#define REFLECT 2
#define WRAP 3

// scipy's "wrap": fold a coordinate outside [0, n - 1] back with period n - 1.
__device__ double wrap_coordinate(double coord, long long n) {
    if (n == 1) return 0.0;
    const double period = (double)(n - 1);
    if (coord < 0) return coord + period * (floor(-coord / period) + 1);
    if (coord > period) return coord - period * floor(coord / period);
    return coord;
}

// Map an integer sample index outside [0, n) into the image.
__device__ long long fold_index(long long i, long long n, long long mode) {
    if (mode == REFLECT) {
        i %= 2 * n;
        if (i < 0) i += 2 * n;  // C++'s % keeps the sign of i; Python's (numba's) does not
        return i >= n ? 2 * n - 1 - i : i;
    }
    return i < 0 ? 0 : (i > n - 1 ? n - 1 : i);
}

// One thread per output pixel (b, row, col) of (N, H, W): the source position and the bilinear
// weights are shared by the pixel's C channels, which the thread loops over. Math in double,
// as in cpu.py.
extern "C" __global__ void affine_warp(long long total, const float* images,
                                       const double* transforms, float* out,
                                       long long h, long long w, long long c, long long mode,
                                       double cval) {
    FOR_EACH_ELEMENT(idx, total) {
        const long long col = idx % w;
        const long long row = (idx / w) % h;
        const long long b = idx / (w * h);
        const double* t = transforms + 6 * b;  // (2, 3), row-major
        double src_r = t[0] * row + t[1] * col + t[2];
        double src_c = t[3] * row + t[4] * col + t[5];
        if (mode == WRAP) {
            src_r = wrap_coordinate(src_r, h);
            src_c = wrap_coordinate(src_c, w);
        }
        float* pixel = out + idx * c;
        if (mode == CONSTANT && !(0.0 <= src_r && src_r <= h - 1 && 0.0 <= src_c && src_c <= w - 1)) {
            for (long long ch = 0; ch < c; ++ch) pixel[ch] = (float)cval;
            continue;
        }
        const double lower_r = floor(src_r);
        const double lower_c = floor(src_c);
        const double wr = src_r - lower_r;
        const double wc = src_c - lower_c;
        const long long r0 = fold_index((long long)lower_r, h, mode);
        const long long r1 = fold_index((long long)lower_r + 1, h, mode);
        const long long c0 = fold_index((long long)lower_c, w, mode);
        const long long c1 = fold_index((long long)lower_c + 1, w, mode);
        const float* image = images + b * h * w * c;
        for (long long ch = 0; ch < c; ++ch) {
            const double v = (1.0 - wr) * (1.0 - wc) * image[(r0 * w + c0) * c + ch]
                             + (1.0 - wr) * wc * image[(r0 * w + c1) * c + ch]
                             + wr * (1.0 - wc) * image[(r1 * w + c0) * c + ch]
                             + wr * wc * image[(r1 * w + c1) * c + ch];
            pixel[ch] = (float)v;
        }
    }
}
"""

_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
# No fused multiply-add contraction: the warp then rounds exactly as the numba kernel does.
# (The other kernels only add and compare floats, so this costs them nothing.)
_OPTIONS = ("--fmad=false",)

_module = None
_kernels: dict[str, object] = {}


def _cupy():
    import cupy  # here, not at the top: this module must import on machines without CuPy

    return cupy


def entry_point(name: str, dtype=None) -> str:
    """The C name of kernel ``name``: ``name_float`` or ``name_double`` for the templated ones."""
    if dtype is None:
        return name
    if np.dtype(dtype) not in _C_TYPES:
        raise TypeError(f"gpu kernel {name}: expected a float32 or float64 array, got {np.dtype(dtype)}")
    return f"{name}_{_C_TYPES[np.dtype(dtype)]}"


def _kernel(name: str, dtype=None):
    """The compiled kernel ``name`` for arrays of ``dtype`` (see ``entry_point``).

    The whole source is compiled on the first call (or loaded from CuPy's disk cache) and the
    kernels are kept for later calls.
    """
    global _module
    name = entry_point(name, dtype)
    if name not in _kernels:
        if _module is None:
            _module = _cupy().RawModule(code=_SOURCE, options=_OPTIONS)
        _kernels[name] = _module.get_function(name)
    return _kernels[name]


def launch_config(total: int) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for ``total >= 1`` elements.

    One thread per element up to ``MAX_BLOCKS * THREADS_PER_BLOCK`` elements; beyond that the
    grid-stride loop gives each thread several, so the grid never exceeds CUDA's limits.
    """
    return min(-(-total // THREADS_PER_BLOCK), MAX_BLOCKS), THREADS_PER_BLOCK


def kernel_args(total: int, *args) -> tuple:
    """The argument tuple of a launch: every int as a 64-bit ``long long``, floats as ``double``."""
    def convert(a):
        if isinstance(a, (int, np.integer)):
            return np.int64(a)
        if isinstance(a, (float, np.floating)):
            return np.float64(a)
        return a

    return tuple(convert(a) for a in (total, *args))


def _launch(kernel, total: int, *args) -> None:
    """Run ``kernel(total, *args)`` over ``total`` elements (nothing to do when it is 0)."""
    if total > 0:
        blocks, threads = launch_config(total)
        kernel((blocks,), (threads,), kernel_args(total, *args))


def im2col(x, window):
    """(N, H, W, C) -> (N*OH*OW, KH*KW*C); see ``reference.im2col``."""
    cp = _cupy()
    x = cp.ascontiguousarray(x)
    n, oh, ow, c = _windows_shape(x.shape, window)
    (kh, kw), (sh, sw), (top, _, left, _) = window
    out = cp.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    _launch(_kernel("im2col", x.dtype), out.size, x, out,
            x.shape[1], x.shape[2], c, oh, ow, kh, kw, sh, sw, top, left)
    return out


def col2im(cols, x_shape, window):
    """(N*OH*OW, KH*KW*C) -> (N, H, W, C), summing overlapping windows; see ``reference.col2im``."""
    cp = _cupy()
    n, oh, ow, c = _windows_shape(x_shape, window)
    (kh, kw), (sh, sw), (top, _, left, _) = window
    cols = cp.ascontiguousarray(cols).reshape(n * oh * ow, kh * kw * c)
    dx = cp.empty(tuple(x_shape), dtype=cols.dtype)
    _launch(_kernel("col2im", cols.dtype), dx.size, cols, dx,
            x_shape[1], x_shape[2], c, oh, ow, kh, kw, sh, sw, top, left)
    return dx


def maxpool_forward(x, window):
    """Max over each window: ``(y, argmax)``, argmax int32 ``i*PW + j``; see ``reference.maxpool_forward``."""
    cp = _cupy()
    x = cp.ascontiguousarray(x)
    n, oh, ow, c = _windows_shape(x.shape, window)
    (ph, pw), (sh, sw), (top, _, left, _) = window
    y = cp.empty((n, oh, ow, c), dtype=x.dtype)
    argmax = cp.empty((n, oh, ow, c), dtype=cp.int32)
    _launch(_kernel("maxpool_forward", x.dtype), y.size, x, y, argmax,
            x.shape[1], x.shape[2], c, oh, ow, ph, pw, sh, sw, top, left)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, window):
    """Route each output gradient to its window's winner; see ``reference.maxpool_backward``."""
    cp = _cupy()
    dy = cp.ascontiguousarray(dy)
    argmax = cp.ascontiguousarray(argmax, dtype=cp.int32)
    _, oh, ow, c = dy.shape
    (ph, pw), (sh, sw), (top, _, left, _) = window
    dx = cp.empty(tuple(x_shape), dtype=dy.dtype)
    _launch(_kernel("maxpool_backward", dy.dtype), dx.size, dy, argmax, dx,
            x_shape[1], x_shape[2], c, oh, ow, ph, pw, sh, sw, top, left)
    return dx


def affine_warp(images, transforms, fill_mode="nearest", cval=0.0):
    """Bilinear affine resampling of an (N, H, W, C) batch to float32; see ``reference.affine_warp``.

    ``transforms`` (N, 2, 3) may be a host array (a small copy to the device) or a device array.
    """
    mode = check_fill_mode(fill_mode)
    cp = _cupy()
    images = cp.ascontiguousarray(images, dtype=cp.float32)
    transforms = cp.ascontiguousarray(cp.asarray(transforms, dtype=cp.float64))
    n, h, w, c = images.shape
    out = cp.empty(images.shape, dtype=cp.float32)
    _launch(_kernel("affine_warp"), n * h * w, images, transforms, out, h, w, c, mode, float(cval))
    return out


# Adam's update as one element-wise kernel: one launch and one pass over memory per parameter,
# where the reference expression makes about a dozen launches and six temporaries. The operation
# is written as the numba kernel in cpu.py writes it (w, m and v are read and written in place).
ADAM_PARAMS = ("T g, T step_size, T beta_1, T one_minus_beta_1, T beta_2, T one_minus_beta_2, T epsilon",
               "T w, T m, T v")
ADAM_OPERATION = """
m = beta_1 * m + one_minus_beta_1 * g;
v = beta_2 * v + one_minus_beta_2 * g * g;
w -= step_size * m / (sqrt(v) + epsilon);
"""
_adam_kernel = None


def adam_update(w, g, m, v, step_size, beta_1, beta_2, epsilon):
    """One Adam step in place on device arrays; see ``reference.adam_update``."""
    global _adam_kernel
    if _adam_kernel is None:
        # No multiply-add contraction: each operation rounds as the reference's CuPy operations do.
        _adam_kernel = _cupy().ElementwiseKernel(*ADAM_PARAMS, ADAM_OPERATION, "tinyconv_adam_update",
                                                 options=_OPTIONS)
    t = w.dtype.type
    _adam_kernel(g, t(step_size), t(beta_1), t(1 - beta_1), t(beta_2), t(1 - beta_2), t(epsilon), w, m, v)
