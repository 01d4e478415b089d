r"""Conv2D: a 2-D convolution as im2col followed by one matrix product.

Shapes (NHWC, channels last):

- input  ``x``: (N, H, W, C)
- kernel ``K``: (KH, KW, C, F), bias ``b``: (F,)
- output ``y``: (N, OH, OW, F), with OH = floor((H + pad_top + pad_bottom - KH) / SH) + 1

Forward. im2col copies the window seen by each output pixel into one row:
``X = im2col(x)`` has shape (N*OH*OW, KH*KW*C). With ``W = K.reshape(KH*KW*C, F)``:

    Z = X @ W + b            (N*OH*OW, F)  -> reshaped to (N, OH, OW, F), already NHWC

Backward, given ``dZ = dL/dZ`` reshaped to (N*OH*OW, F):

    dW = X^T @ dZ            (KH*KW*C, F)  -> reshaped to the kernel's shape
    db = sum of dZ over rows (F,)
    dX = dZ @ W^T            (N*OH*OW, KH*KW*C)
    dx = col2im(dX)          (N, H, W, C): the adjoint of im2col, summing overlapping windows

(Like every deep-learning library, this computes cross-correlation; the kernel is learned, so
flipping it would change nothing.)

Algorithm. The formulas above are ``algorithm="im2col"``. On the CPU, a 3x3 stride-1 layer with
at least ``WINOGRAD_MIN_CHANNELS`` input channels runs the Winograd algorithm of ``winograd.py``
instead (``algorithm="auto"``, the default): the same function with 4x fewer multiplications,
F(4x4, 3x3). ``"winograd"`` (F(4x4, 3x3)) and ``"winograd_2x2"`` (F(2x2, 3x3): 2.25x fewer, and
float32 rounding as small as im2col's) ask for it wherever the kernel shape allows; on the GPU,
Conv2D always uses im2col.
"""
from __future__ import annotations

from .. import arguments, initializers, kernels
from ..backend import get_array_module
from . import winograd
from .base import LinearLayer, WindowLayer, constructor_owner

# The Winograd tile of each algorithm name; "auto" takes "winograd" where it applies, else im2col.
WINOGRAD_TILES = {"winograd": winograd.F4X4_3X3, "winograd_2x2": winograd.F2X2_3X3}
ALGORITHMS = ("auto", "im2col", *WINOGRAD_TILES)
# With few input channels the 36 Winograd products are thin (inner dimension C) and bound by
# memory, while im2col's single product has 9*C. Measured at batch 32 on 32x32 inputs, forward +
# backward: C=16 im2col 19 ms vs Winograd 24 ms; C=32 26 vs 21 ms; C=64 70 vs 41 ms.
WINOGRAD_MIN_CHANNELS = 32


class Conv2D(WindowLayer, LinearLayer):
    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid",
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", algorithm: str = "auto", name: str | None = None,
                 input_shape=None):
        owner = constructor_owner(self, name)
        self.filters = arguments.integer(filters, "filters", owner, low=1)
        kernel_size = arguments.pair(kernel_size, "kernel_size", owner)
        strides = arguments.pair(strides, "strides", owner)
        self.use_bias = arguments.boolean(use_bias, "use_bias", owner)
        initializers.get(kernel_initializer, owner=f"{owner}: kernel_initializer")
        initializers.get(bias_initializer, owner=f"{owner}: bias_initializer")
        self.algorithm = arguments.one_of(algorithm, "algorithm", owner, ALGORITHMS)
        if algorithm in WINOGRAD_TILES and (kernel_size, strides) != ((3, 3), (1, 1)):
            raise ValueError(f"{owner}: the Winograd algorithm needs a 3x3 kernel with "
                             f"strides 1, got kernel {kernel_size} and strides {strides}")
        super().__init__(window=kernel_size, strides=strides, padding=padding, window_name="kernel_size",
                         activation=activation, name=name, input_shape=input_shape)
        self.kernel_size = self.window
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.cols = None

    def output_channels(self, input_channels: int) -> int:
        return self.filters

    def build(self, input_shape):
        super().build(input_shape)
        kh, kw = self.kernel_size
        self.add_param("kernel", (kh, kw, input_shape[2], self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer)

    def forward_linear(self, x):
        self.check_input(x)
        if self._runs_winograd(x):
            bias = self.params["bias"] if self.use_bias else x.dtype.type(0)
            transforms = WINOGRAD_TILES["winograd" if self.algorithm == "auto" else self.algorithm]
            z, cache = winograd.forward(x, self.params["kernel"], bias, self.pads,
                                        (x.shape[0], *self.output_shape), transforms)
            self.cache = "winograd", cache
            return z
        n = x.shape[0]
        cols = kernels.im2col(x, self.kernel_size, self.strides, self.pads, out=self._cols_buffer(x))
        weights = self.params["kernel"].reshape(-1, self.filters)
        z = cols @ weights
        if self.use_bias:
            z += self.params["bias"]
        self.cache = "im2col", (cols, x.shape)
        return z.reshape(n, *self.output_shape)

    def backward_linear(self, dz, input_gradient: bool = True):
        algorithm, cache = self.cache
        if algorithm == "winograd":
            dkernel, dbias, dx = winograd.backward(dz, cache, input_gradient)
            self.grads["kernel"] = dkernel
            if self.use_bias:
                self.grads["bias"] = dbias
            return dx
        cols, x_shape = cache
        dz = dz.reshape(-1, self.filters)
        kernel = self.params["kernel"]
        self.grads["kernel"] = (cols.T @ dz).reshape(kernel.shape)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=0)
        if not input_gradient:
            return None
        dcols = dz @ kernel.reshape(-1, self.filters).T
        return kernels.col2im(dcols, x_shape, self.kernel_size, self.strides, self.pads)

    def _winograd_shape(self) -> bool:
        return self.window == (3, 3) and self.strides == (1, 1)

    def _runs_winograd(self, x) -> bool:
        if self.algorithm == "im2col" or not self._winograd_shape() or not kernels.has_winograd(x):
            return False
        return self.algorithm != "auto" or self.input_shape[2] >= WINOGRAD_MIN_CHANNELS

    def _cols_buffer(self, x):
        """The (N*OH*OW, KH*KW*C) im2col matrix, the step's largest array, kept from step to step:
        it must live from forward to backward anyway, and reusing it saves a fresh allocation."""
        shape = (x.shape[0] * self.output_shape[0] * self.output_shape[1],
                 self.kernel_size[0] * self.kernel_size[1] * self.input_shape[2])
        xp = get_array_module(x)
        if self.cols is None or self.cols.shape != shape or self.cols.dtype != x.dtype or \
                get_array_module(self.cols) is not xp:
            self.cols = xp.empty(shape, dtype=x.dtype)
        return self.cols
