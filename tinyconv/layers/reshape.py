r"""Reshape: view each sample with another shape, as Keras's ``Reshape(target_shape)``.

Shapes: ``x`` (N, *input_shape) -> ``y`` (N, *target_shape), with the same number of values per
sample, in row-major (C) order. One entry of ``target_shape`` may be -1: it is inferred.

Forward and backward are reshapes: ``y = x.reshape(N, *target_shape)``,
``dx = dy.reshape(N, *input_shape)``. No arithmetic, no copy (a contiguous array stays contiguous).
"""
from __future__ import annotations

import numpy as np

from .. import arguments
from .base import Layer, constructor_owner


def _is_minus_one(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == -1


class Reshape(Layer):
    def __init__(self, target_shape, name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        given = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else target_shape
        inferred = [i for i, d in enumerate(given) if _is_minus_one(d)] if isinstance(given, tuple) else []
        if len(inferred) > 1:
            raise ValueError(f"{owner}: target_shape may hold one -1 (the inferred size), got {given}")
        # The -1 is checked as a 1: every other entry must be a positive integer.
        checked = arguments.sizes(tuple(1 if i in inferred else d for i, d in enumerate(given))
                                  if isinstance(given, tuple) else given, "target_shape", owner,
                                  "a tuple of positive integers with at most one -1, like (4, 4, 64)")
        self.target_shape = tuple(-1 if i in inferred else d for i, d in enumerate(checked))
        super().__init__(name=name, input_shape=input_shape)

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
