r"""MaxPooling2D: the maximum over each (PH, PW) window.

Shapes: ``x`` (N, H, W, C) -> ``y`` (N, OH, OW, C); strides default to the pool size.

Forward: ``y[n, r, q, c] = max over the window (r, q) of x[n, :, :, c]``. Padding (``"same"``)
is -inf, so it never wins a window (a window of negatives must not return 0).

Backward: the max is locally the identity on the winning input and constant in the others, so

    dx[winner of (n, r, q, c)] += dy[n, r, q, c]        and 0 elsewhere.

Overlapping windows (stride < pool size) add up; a tie goes to one input only (the first in the
window, row-major), which keeps the gradient a valid subgradient.
"""
from __future__ import annotations

from .. import kernels
from .base import WindowLayer


class MaxPooling2D(WindowLayer):
    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid",
                 name: str | None = None, input_shape=None):
        super().__init__(window=pool_size, strides=pool_size if strides is None else strides,
                         padding=padding, window_name="pool_size", name=name, input_shape=input_shape)
        self.pool_size = self.window

    def forward(self, x, training: bool = False):
        self.check_input(x)
        y, argmax = kernels.maxpool_forward(x, self.pool_size, self.strides, self.pads)
        self.cache = argmax, x.shape
        return y

    def backward(self, dy):
        argmax, x_shape = self.cache
        return kernels.maxpool_backward(dy, argmax, x_shape, self.pool_size, self.strides, self.pads)
