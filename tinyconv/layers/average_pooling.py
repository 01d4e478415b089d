r"""AveragePooling2D: the mean over each (PH, PW) window.

Shapes: ``x`` (N, H, W, C) -> ``y`` (N, OH, OW, C); strides default to the pool size, and the
output size and padding are those of every window (``kernels/geometry.py``).

Forward: with ``W(r, q)`` the input pixels that window (r, q) covers,

    y[n, r, q, c] = (1 / |W(r, q)|) * sum over (h, w) in W(r, q) of x[n, h, w, c].

With ``"valid"`` every window holds PH * PW pixels. With ``"same"`` the padding is not averaged in:
``|W(r, q)|`` counts the real pixels only, as Keras (TensorFlow's ``avg_pool``) does, so an edge
window is the mean of what it covers, not that mean shrunk towards 0.

Backward: y is linear in x, and each pixel of W(r, q) has weight ``1 / |W(r, q)|`` in it, so

    dx[n, h, w, c] = sum over the windows (r, q) that cover (h, w) of dy[n, r, q, c] / |W(r, q)|.

Windows that overlap (stride < pool size) add up, as for MaxPooling2D. The code runs the sums as
PH * PW strided slices of the (padded) image, one per offset (i, j) in the window; it is plain
array code, the same on NumPy and CuPy.
"""
from __future__ import annotations

from ..backend import get_array_module
from .pooling import PoolingWindow


class AveragePooling2D(PoolingWindow):
    def forward(self, x, training: bool = False):
        self.check_input(x)
        sums = self.window_sums(self.padded(x))
        counts = self.window_counts(x)
        self.cache = counts
        return sums / counts

    def backward(self, dy):
        counts = self.cache
        n, (h, w, c) = dy.shape[0], self.input_shape
        top, bottom, left, right = self.pads
        (ph, pw), (sh, sw) = self.window, self.strides
        oh, ow = dy.shape[1:3]
        share = dy / counts
        dx = get_array_module(dy).zeros((n, h + top + bottom, w + left + right, c), dtype=dy.dtype)
        for i in range(ph):
            for j in range(pw):
                dx[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :] += share
        return dx[:, top:top + h, left:left + w, :]

    def padded(self, x):
        """x with the window's zero padding around it."""
        top, bottom, left, right = self.pads
        return get_array_module(x).pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def window_sums(self, x_padded):
        """The sum over each window, (N, OH, OW, C): one strided slice per offset in the window."""
        (ph, pw), (sh, sw) = self.window, self.strides
        oh, ow = self.output_shape[:2]
        total = x_padded[:, 0:sh * oh:sh, 0:sw * ow:sw, :].copy()
        for i in range(ph):
            for j in range(pw):
                if i or j:
                    total += x_padded[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
        return total

    def window_counts(self, x):
        """|W(r, q)|, the real pixels in each window, (1, OH, OW, 1): the window sums of an image of ones."""
        h, w, _ = self.input_shape
        ones = get_array_module(x).ones((1, h, w, 1), dtype=x.dtype)
        return self.window_sums(self.padded(ones))
