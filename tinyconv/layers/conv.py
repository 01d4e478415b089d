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
"""
from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from .base import LinearLayer, WindowLayer


class Conv2D(WindowLayer, LinearLayer):
    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid",
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name: str | None = None, input_shape=None):
        super().__init__(window=kernel_size, strides=strides, padding=padding, activation=activation,
                         name=name, input_shape=input_shape)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"layer {self.name!r}: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = self.window
        self.use_bias = use_bias
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
        n = x.shape[0]
        cols = kernels.im2col(x, self.kernel_size, self.strides, self.pads, out=self._cols_buffer(x))
        weights = self.params["kernel"].reshape(-1, self.filters)
        z = cols @ weights
        if self.use_bias:
            z += self.params["bias"]
        self.cache = cols, x.shape
        return z.reshape(n, *self.output_shape)

    def backward_linear(self, dz):
        cols, x_shape = self.cache
        dz = dz.reshape(-1, self.filters)
        kernel = self.params["kernel"]
        self.grads["kernel"] = (cols.T @ dz).reshape(kernel.shape)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=0)
        dcols = dz @ kernel.reshape(-1, self.filters).T
        return kernels.col2im(dcols, x_shape, self.kernel_size, self.strides, self.pads)

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
