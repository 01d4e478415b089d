r"""Dropout, inverted: zero each unit with probability ``rate`` while training, scale the rest.

Shapes are kept. With a mask ``m`` of independent Bernoulli(1 - rate) draws:

    training:   y = x * m / (1 - rate)        backward: dx = dy * m / (1 - rate)
    inference:  y = x                         backward: dx = dy

Scaling at training time keeps the expected activation equal in both modes, so nothing has to
change at inference. The mask is drawn on the host from the seeded "dropout" generator (or the
layer's own, when ``seed`` is given) and moved to the array's device, so a seed fixes it on
either device; a sample's mask is the same however many processes share its batch
(``random.per_sample_uniform``).
"""
from __future__ import annotations

import numpy as np

from .. import arguments, random
from ..backend import get_array_module
from .base import Layer, constructor_owner


class Dropout(Layer):
    def __init__(self, rate: float, seed: int | None = None, name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        self.rate = arguments.number(rate, "rate", owner, low=0, high=1, high_open=True)
        self.seed = arguments.seed(seed, "seed", owner)
        self.generator = np.random.default_rng(seed) if seed is not None else None
        super().__init__(name=name, input_shape=input_shape)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        if not training or self.rate == 0:
            self.cache = None  # the identity: backward passes dy through
            return x
        rng = self.generator if self.generator is not None else random.generator("dropout")
        keep = random.per_sample_uniform(rng, x.shape) >= self.rate
        xp = get_array_module(x)
        scaled_mask = xp.asarray(keep, dtype=x.dtype) * x.dtype.type(1 / (1 - self.rate))
        self.cache = scaled_mask
        return x * scaled_mask

    def backward(self, dy):
        scaled_mask = self.cache
        return dy if scaled_mask is None else dy * scaled_mask
