r"""UpSampling2D: repeat every pixel SH x SW times (nearest-neighbour enlargement).

Shapes: ``x`` (N, H, W, C) -> ``y`` (N, H*SH, W*SW, C).

Forward: ``y[n, i, j, c] = x[n, i // SH, j // SW, c]``: each input pixel is copied into an
SH x SW block.

Backward: an input pixel feeds every output pixel of its block, so its gradient is the sum of
the block's gradients:

    dx[n, i, j, c] = sum over a < SH, b < SW of dy[n, i*SH + a, j*SW + b, c]

computed as a reshape of ``dy`` to (N, H, SH, W, SW, C) and a sum over the two block axes. No
parameters; the layer is the adjoint of a sum pooling with the same window.
"""
from __future__ import annotations

from .. import arguments
from ..backend import get_array_module
from .base import Layer, constructor_owner

INTERPOLATIONS = ("nearest",)


class UpSampling2D(Layer):
    def __init__(self, size=(2, 2), interpolation: str = "nearest", name: str | None = None,
                 input_shape=None):
        owner = constructor_owner(self, name)
        self.size = arguments.pair(size, "size", owner)
        # Keras also offers "bilinear"; tinyconv has nearest-neighbour copies only.
        self.interpolation = arguments.one_of(interpolation, "interpolation", owner, INTERPOLATIONS)
        super().__init__(name=name, input_shape=input_shape)

    def compute_output_shape(self, input_shape):
        h, w, c = self.image_shape(input_shape)
        return h * self.size[0], w * self.size[1], c

    def forward(self, x, training: bool = False):
        self.check_input(x)
        xp = get_array_module(x)
        sh, sw = self.size
        return xp.repeat(xp.repeat(x, sh, axis=1), sw, axis=2)

    def backward(self, dy):
        n, h, w, c = (dy.shape[0], *self.input_shape)
        sh, sw = self.size
        return dy.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4))

    def receptive_field(self, field):
        """Each output pixel copies one input pixel; output pixels stand S times closer."""
        if field is None:
            return None
        size_h, size_w, jump_h, jump_w = field
        return size_h, size_w, jump_h / self.size[0], jump_w / self.size[1]
