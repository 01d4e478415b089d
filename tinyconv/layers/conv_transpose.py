r"""Conv2DTranspose: the input gradient of a Conv2D, used as a layer that makes images larger.

Shapes (NHWC):

- input  ``x``: (N, H, W, C)
- kernel ``K``: (KH, KW, F, C) (Keras's order: *output* channels before input channels), bias ``b``: (F,)
- output ``y``: (N, OH, OW, F) with, as Keras computes it,
  ``OH = H * SH + max(KH - SH, 0)`` for ``"valid"`` and ``OH = H * SH`` for ``"same"``.

The idea. Take the Conv2D that maps an (N, OH, OW, F) image to (N, H, W, C) with the same kernel,
strides and padding (its "partner"). Its input gradient spreads each output pixel's value back over
the KH x KW window it came from. Conv2DTranspose *is* that map, with ``x`` in place of the gradient:
each input pixel paints a scaled copy of the kernel onto the output, at stride S.

With ``X = x`` reshaped to (N*H*W, C) and ``W = K`` reshaped to (KH*KW*F, C):

    forward:   y = col2im(X @ W^T) + b          col2im to (N, OH, OW, F), summing overlaps

Backward, given ``dy`` (N, OH, OW, F), with ``D = im2col(dy)`` of shape (N*H*W, KH*KW*F): because
col2im is the adjoint of im2col, the gradient of ``col2im(M)`` with respect to ``M`` is ``im2col(dy)``, so

    dX = D @ W                  (N*H*W, C)   -> reshaped to x's shape: the partner's *forward*
    dW = D^T @ X                (KH*KW*F, C) -> reshaped to the kernel's shape
    db = sum of dy over N, OH, OW

Conv2D is im2col then a product; Conv2DTranspose is a product then col2im. Each one's backward is
the other's forward: the adjoint pair once more (see docs/conv2d-transpose.md for a numeric check).

Padding: the partner Conv2D's, computed on the larger (OH, OW) side as Conv2D does. With ``"valid"``
and KH < SH, the last SH - KH rows receive no window and hold the bias alone (as in Keras).
"""
from __future__ import annotations

import math

from .. import arguments, initializers, kernels
from ..kernels import geometry
from .base import WindowLayer, constructor_owner
from .linear import LinearLayer


class Conv2DTranspose(WindowLayer, LinearLayer):
    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid",
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        self.filters = arguments.integer(filters, "filters", owner, low=1)
        self.use_bias = arguments.boolean(use_bias, "use_bias", owner)
        initializers.get(kernel_initializer, owner=f"{owner}: kernel_initializer")
        initializers.get(bias_initializer, owner=f"{owner}: bias_initializer")
        super().__init__(window=kernel_size, strides=strides, padding=padding, window_name="kernel_size",
                         activation=activation, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, name=name, input_shape=input_shape)
        self.kernel_size = self.window
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shape):
        h, w, _ = self.image_shape(input_shape)
        (kh, kw), (sh, sw) = self.window, self.strides
        if self.padding == "same":
            oh, ow = h * sh, w * sw
        else:
            oh, ow = h * sh + max(kh - sh, 0), w * sw + max(kw - sw, 0)
        self.geometry = geometry.Window.keras(self.padding, oh, ow, self.window, self.strides)  # its partner Conv2D's
        return oh, ow, self.filters

    def build(self, input_shape):
        super().build(input_shape)
        kh, kw = self.kernel_size
        self.add_param("kernel", (kh, kw, self.filters, input_shape[2]), self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer)

    def forward_linear(self, x):
        self.check_input(x)
        channels = x.shape[3]
        self.cache = x
        painted = kernels.matmul(x.reshape(-1, channels), self.params["kernel"].reshape(-1, channels).T)
        y = kernels.col2im(painted, (x.shape[0], *self.output_shape), self.geometry)
        if self.use_bias:
            y += self.params["bias"]
        return y

    def backward_linear(self, dz, input_gradient: bool = True):
        x = self.cache
        channels = x.shape[3]
        kernel = self.params["kernel"]
        windows = kernels.im2col(dz, self.geometry)
        self.grads["kernel"] = kernels.matmul(windows.T, x.reshape(-1, channels)).reshape(kernel.shape)
        if self.use_bias:
            self.grads["bias"] = kernels.column_sums(dz.reshape(-1, dz.shape[-1]))
        if not input_gradient:
            return None
        return kernels.matmul(windows, kernel.reshape(-1, channels)).reshape(x.shape)

    def receptive_field(self, field):
        """An output pixel is painted by at most ceil(K / S) input pixels per axis, and output
        pixels stand S times closer than input pixels."""
        if field is None:
            return None
        size_h, size_w, jump_h, jump_w = field
        (kh, kw), (sh, sw) = self.window, self.strides
        return (math.ceil(size_h + (math.ceil(kh / sh) - 1) * jump_h),
                math.ceil(size_w + (math.ceil(kw / sw) - 1) * jump_w), jump_h / sh, jump_w / sw)
