r"""MaxPooling2D, the maximum over each (PH, PW) window; GlobalAveragePooling2D, the mean of each channel.

Shapes: ``x`` (N, H, W, C) -> ``y`` (N, OH, OW, C); strides default to the pool size.

Forward: ``y[n, r, q, c] = max over the window (r, q) of x[n, :, :, c]``. Padding (``"same"``)
is -inf, so it never wins a window (a window of negatives must not return 0).

Backward: the max is locally the identity on the winning input and constant in the others, so

    dx[winner of (n, r, q, c)] += dy[n, r, q, c]        and 0 elsewhere.

Overlapping windows (stride < pool size) add up; a tie goes to one input only (the first in the
window, row-major), which keeps the gradient a valid subgradient.

GlobalAveragePooling2D: ``x`` (N, H, W, C) -> ``y`` (N, C), ``y[n, c] = mean over (h, w) of
x[n, h, w, c]``. Every input pixel counts ``1 / (H*W)`` towards its channel's mean, so

    dx[n, h, w, c] = dy[n, c] / (H * W)        for every h, w.

It replaces Flatten + Dense's large weight matrix by a parameter-free average, and makes the
model accept any image size; every output sees the whole input.
"""
from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from .base import Layer, WindowLayer


class PoolingWindow(WindowLayer):
    """Keras's pooling arguments: a ``pool_size`` window whose strides default to the pool size."""

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid",
                 name: str | None = None, input_shape=None):
        super().__init__(window=pool_size, strides=pool_size if strides is None else strides,
                         padding=padding, window_name="pool_size", name=name, input_shape=input_shape)
        self.pool_size = self.window


class MaxPooling2D(PoolingWindow):

    def forward(self, x, training: bool = False):
        self.check_input(x)
        y, argmax = kernels.maxpool_forward(x, self.geometry)
        self.cache = argmax, x.shape
        return y

    def backward(self, dy):
        argmax, x_shape = self.cache
        return kernels.maxpool_backward(dy, argmax, x_shape, self.geometry)


class GlobalAveragePooling2D(Layer):
    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"layer {self.name!r} (GlobalAveragePooling2D): expected input of shape (batch, height, width, "
                f"channels), got (batch, {', '.join(map(str, input_shape))})")
        return (input_shape[2],)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        return x.mean(axis=(1, 2))

    def backward(self, dy):
        n, h, w, c = (dy.shape[0], *self.input_shape)
        dx = get_array_module(dy).empty((n, h, w, c), dtype=dy.dtype)
        dx[...] = (dy / (h * w))[:, None, None, :]  # a real array, not a broadcast view
        return dx

    def receptive_field(self, field):
        return None  # every output sees the whole input
