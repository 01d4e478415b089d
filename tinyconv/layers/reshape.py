r"""Reshape: view each sample with another shape, as Keras's ``Reshape(target_shape)``.

Shapes: ``x`` (N, *input_shape) -> ``y`` (N, *target_shape), with the same number of values per
sample, in row-major (C) order. One entry of ``target_shape`` may be -1: it is inferred.

Forward and backward are reshapes: ``y = x.reshape(N, *target_shape)``,
``dx = dy.reshape(N, *input_shape)``. No arithmetic, no copy (a contiguous array stays contiguous).
"""
from __future__ import annotations

import numpy as np

from .base import Layer


class Reshape(Layer):
    def __init__(self, target_shape, name: str | None = None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        try:
            target = tuple(target_shape)
        except TypeError:
            raise TypeError(f"layer {self.name!r}: target_shape must be a tuple of ints like (4, 4, 64), "
                            f"got {target_shape!r}") from None
        if not target or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and
                                 (d >= 1 or d == -1) for d in target) or target.count(-1) > 1:
            raise ValueError(f"layer {self.name!r}: target_shape must hold positive ints and at most "
                             f"one -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target)

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if -1 in self.target_shape and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if -1 not in self.target_shape and known == size:
            return self.target_shape
        raise ValueError(f"layer {self.name!r}: cannot reshape an input of shape {tuple(input_shape)} "
                         f"({size} values per sample) to {self.target_shape}")

    def forward(self, x, training: bool = False):
        self.check_input(x)
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, dy):
        return dy.reshape(dy.shape[0], *self.input_shape)
