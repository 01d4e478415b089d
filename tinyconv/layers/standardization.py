r"""Rescaling and Normalization: fixed affine maps of the input, so that a model file carries the
preprocessing its training data had (Keras's preprocessing layers of the same names).

Rescaling(scale, offset): ``y = x * scale + offset``, e.g. ``Rescaling(1 / 255)`` for 8-bit images.

Normalization(mean, variance), per channel c (the last axis):

    y[..., c] = (x[..., c] - mean[c]) / max(sqrt(variance[c]), eps),        eps = 1e-7 (Keras's)

``adapt(x)`` sets ``mean`` and ``variance`` to the per-channel statistics of the data ``x`` (over
every axis but the last; computed in float64): the featurewise standardisation of
``ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)``, but inside the
model, so that the model file is all a reader of new images needs. The statistics are fixed: nothing
trains them.

Backward, both are elementwise affine maps with fixed coefficients:

    Rescaling:      dx = dy * scale
    Normalization:  dx[..., c] = dy[..., c] / max(sqrt(variance[c]), eps)

As in Keras, statistics given to the constructor are part of the layer's configuration, while
adapted ones are weights (``mean``, ``variance``, ``count``), saved and loaded with the others.
"""
from __future__ import annotations

import numpy as np

from .. import arguments, backend
from ..backend import get_array_module
from .base import Layer, constructor_owner

EPSILON = 1e-7


class Rescaling(Layer):
    def __init__(self, scale: float, offset: float = 0.0, name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        self.scale = arguments.number(scale, "scale", owner)
        self.offset = arguments.number(offset, "offset", owner)
        super().__init__(name=name, input_shape=input_shape)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        return x * x.dtype.type(self.scale) + x.dtype.type(self.offset)

    def backward(self, dy):
        return dy * dy.dtype.type(self.scale)


class Normalization(Layer):
    def __init__(self, axis: int = -1, mean=None, variance=None, invert: bool = False, name: str | None = None,
                 input_shape=None):
        owner = constructor_owner(self, name)
        if axis != -1:
            raise ValueError(f"{owner}: axis must be -1 (per channel, the last axis), got {axis!r}")
        if arguments.boolean(invert, "invert", owner):
            raise ValueError(f"{owner}: invert=True (undoing a normalization) is not supported")
        if (mean is None) != (variance is None):
            raise ValueError(f"{owner}: give both mean and variance, or neither (then call adapt(x))")
        self.axis = -1
        self.given = None
        if mean is not None:
            mean, variance = np.asarray(mean, dtype=np.float64), np.asarray(variance, dtype=np.float64)
            if mean.ndim > 1 or mean.shape != variance.shape or not np.isfinite(mean).all() \
                    or not np.isfinite(variance).all() or (variance < 0).any():
                raise ValueError(f"{owner}: mean and variance must be finite numbers (one per channel, or one for "
                                 f"all) with variance >= 0, got shapes {mean.shape} and {variance.shape}")
            self.given = (mean, variance)
        super().__init__(name=name, input_shape=input_shape)

    def build(self, input_shape):
        super().build(input_shape)
        channels = (input_shape[-1],)
        if self.given is None:  # adapted statistics are weights, as in Keras
            self.add_param("mean", channels, "zeros", trainable=False)
            self.add_param("variance", channels, "ones", trainable=False)
            self.add_param("count", (), "zeros", trainable=False)
        elif self.given[0].size not in (1, channels[0]):
            raise ValueError(f"layer {self.name!r} (Normalization): {self.given[0].size} statistics for "
                             f"{channels[0]} channels")

    def statistics(self, xp, dtype):
        """``(mean, scale)`` with ``scale = 1 / max(sqrt(variance), eps)``, on the device, in ``dtype``."""
        if self.given is not None:
            mean, variance = self.given
        else:
            mean, variance = self.non_trainable_params["mean"], self.non_trainable_params["variance"]
            mean, variance = backend.to_numpy(mean).astype(np.float64), backend.to_numpy(variance).astype(np.float64)
        scale = 1 / np.maximum(np.sqrt(variance), EPSILON)
        return xp.asarray(mean, dtype=dtype), xp.asarray(scale, dtype=dtype)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        mean, scale = self.statistics(get_array_module(x), x.dtype)
        return (x - mean) * scale

    def backward(self, dy):
        _, scale = self.statistics(get_array_module(dy), dy.dtype)
        return dy * scale

    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Set the statistics to the per-channel mean and variance of ``data`` (N, ..., C)."""
        owner = f"layer {self.name!r} (Normalization): adapt"
        if self.given is not None:
            raise ValueError(f"{owner}: this layer was given its mean and variance; adapt needs Normalization() "
                             "without them")
        x = np.asarray(data)
        if x.ndim < 2 or x.dtype.kind not in "fiu" or not np.isfinite(x).all():
            raise ValueError(f"{owner}: expected a finite numeric array (N, ..., C), got "
                             f"{x.dtype} of shape {x.shape}")
        if not self.built:
            self.build(x.shape[1:])
        elif x.shape[-1] != self.input_shape[-1]:
            raise ValueError(f"{owner}: the data have {x.shape[-1]} channels, the layer {self.input_shape[-1]}")
        flat = x.reshape(-1, x.shape[-1])
        # float64 sums a block at a time: no full-size float64 copy of a large data set
        blocks = range(0, len(flat), 1 << 20)
        mean = sum(flat[i:i + (1 << 20)].sum(axis=0, dtype=np.float64) for i in blocks) / len(flat)
        variance = sum(((flat[i:i + (1 << 20)] - mean) ** 2).sum(axis=0) for i in blocks) / len(flat)
        self.set_weights([mean, variance, np.float64(len(flat))])
