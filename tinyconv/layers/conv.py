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

Algorithm. The code below is these formulas. Which algorithm runs is decided in one call,
``conv_algorithms.choose``: Winograd (4x or 5x fewer multiplications, for 3x3 stride-1 layers on the CPU,
``algorithm=`` picks it) or the loop kernels (when switched on) compute the same function
otherwise.
"""
from __future__ import annotations

from .. import arguments, initializers, kernels
from . import conv_algorithms
from .base import WindowLayer, constructor_owner
from .linear import LinearLayer


class Conv2D(WindowLayer, LinearLayer):
    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid",
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, algorithm: str = "auto", name: str | None = None,
                 input_shape=None):
        owner = constructor_owner(self, name)
        self.filters = arguments.integer(filters, "filters", owner, low=1)
        kernel_size = arguments.pair(kernel_size, "kernel_size", owner)
        strides = arguments.pair(strides, "strides", owner)
        self.use_bias = arguments.boolean(use_bias, "use_bias", owner)
        initializers.get(kernel_initializer, owner=f"{owner}: kernel_initializer")
        initializers.get(bias_initializer, owner=f"{owner}: bias_initializer")
        self.algorithm = arguments.one_of(algorithm, "algorithm", owner, conv_algorithms.ALGORITHMS)
        if algorithm in conv_algorithms.WINOGRAD_TILES and \
                not conv_algorithms.winograd_shape(kernel_size, strides):
            raise ValueError(f"{owner}: the Winograd algorithm needs a 3x3 kernel with "
                             f"strides 1, got kernel {kernel_size} and strides {strides}")
        super().__init__(window=kernel_size, strides=strides, padding=padding, window_name="kernel_size",
                         activation=activation, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, name=name, input_shape=input_shape)
        self.kernel_size = self.window
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

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
        algorithm = conv_algorithms.choose(self, x)  # "im2col": the formulas below
        if algorithm != "im2col":
            z, cache = conv_algorithms.OTHERS[algorithm].forward(self, x)
            self.cache = algorithm, cache
            return z
        cols = kernels.im2col(x, self.geometry)  # X
        bias = self.params["bias"] if self.use_bias else None
        z = kernels.matmul(cols, self.params["kernel"].reshape(-1, self.filters), bias)  # Z = X W + b
        self.cache = "im2col", (cols, x.shape)
        return z.reshape(x.shape[0], *self.output_shape)

    def backward_linear(self, dz, input_gradient: bool = True):
        algorithm, cache = self.cache
        if algorithm != "im2col":
            dkernel, dbias, dx = conv_algorithms.OTHERS[algorithm].backward(self, dz, cache, input_gradient)
            self.grads["kernel"] = dkernel
            if self.use_bias:
                self.grads["bias"] = dbias
            return dx
        cols, x_shape = cache
        dz = dz.reshape(-1, self.filters)
        kernel = self.params["kernel"]
        self.grads["kernel"] = kernels.matmul(cols.T, dz).reshape(kernel.shape)   # dW = X^T dZ
        if self.use_bias:
            self.grads["bias"] = kernels.column_sums(dz)                          # db = sum of dZ's rows
        if not input_gradient:
            return None
        dcols = kernels.matmul(dz, kernel.reshape(-1, self.filters).T)            # dX = dZ W^T
        return kernels.col2im(dcols, x_shape, self.geometry)
