"""Weight initializers with Keras's names and formulas.

Fans follow Keras: a conv kernel (KH, KW, C_in, F) has ``fan_in = KH*KW*C_in`` and
``fan_out = KH*KW*F``; a dense kernel (in, units) has ``fan_in = in`` and ``fan_out = units``.
Values are drawn on the host from the seeded "init" generator, in float64, then cast.
"""
from __future__ import annotations

import numpy as np

from . import arguments, random


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


def variance_scaling(shape, scale: float, mode: str, distribution: str):
    """Keras's ``VarianceScaling``: draws whose variance is ``scale / n``, with ``n`` the fan-in, the
    fan-out or their mean (``mode`` "fan_in", "fan_out", "fan_avg").

    ``"uniform"``: U(-limit, limit), limit = sqrt(3 scale / n). ``"truncated_normal"``: a normal cut at
    two standard deviations, its std divided by 0.8796 (the std of a unit normal truncated to [-2, 2])
    so the kept samples have the intended variance; the tails are redrawn. ``"untruncated_normal"``:
    a plain normal with std sqrt(scale / n).
    """
    fan_in, fan_out = compute_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    rng = random.generator("init")
    if distribution == "uniform":
        limit = np.sqrt(3.0 * scale / n)
        return rng.uniform(-limit, limit, size=shape)
    if distribution == "untruncated_normal":
        return rng.normal(0.0, np.sqrt(scale / n), size=shape)
    return _truncated_normal(rng, np.sqrt(scale / n) / 0.87962566103423978, shape)


def _truncated_normal(rng, std: float, shape):
    values = rng.normal(0.0, std, size=shape)
    outside = np.abs(values) > 2 * std
    while outside.any():  # redraw the tails
        values[outside] = rng.normal(0.0, std, size=int(outside.sum()))
        outside = np.abs(values) > 2 * std
    return values


def glorot_uniform(shape):
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out))."""
    return variance_scaling(shape, 1.0, "fan_avg", "uniform")


def glorot_normal(shape):
    return variance_scaling(shape, 1.0, "fan_avg", "truncated_normal")


def he_normal(shape):
    """Truncated normal with std sqrt(2 / fan_in) (before the truncation's correction, as Keras)."""
    return variance_scaling(shape, 2.0, "fan_in", "truncated_normal")


def he_uniform(shape):
    return variance_scaling(shape, 2.0, "fan_in", "uniform")


def lecun_normal(shape):
    return variance_scaling(shape, 1.0, "fan_in", "truncated_normal")


def lecun_uniform(shape):
    return variance_scaling(shape, 1.0, "fan_in", "uniform")


def random_normal(shape):
    """Keras's ``RandomNormal()``: mean 0, stddev 0.05."""
    return random.generator("init").normal(0.0, 0.05, size=shape)


def random_uniform(shape):
    """Keras's ``RandomUniform()``: U(-0.05, 0.05)."""
    return random.generator("init").uniform(-0.05, 0.05, size=shape)


def truncated_normal(shape):
    """Keras's ``TruncatedNormal()``: stddev 0.05, cut (and redrawn) beyond two standard deviations."""
    return _truncated_normal(random.generator("init"), 0.05, shape)


def zeros(shape):
    return np.zeros(shape)


def ones(shape):
    return np.ones(shape)


INITIALIZERS = {function.__name__: function for function in (
    glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform, random_normal,
    random_uniform, truncated_normal, ones, zeros)}


def get(identifier, owner: str = "initializer"):
    """Resolve a name (or a callable ``shape -> array``) to an initializer."""
    if callable(identifier):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"{owner}: expected an initializer name such as 'glorot_uniform' or a function "
                        f"shape -> array, got {arguments.describe(identifier)}")
    if identifier not in INITIALIZERS:
        raise ValueError(
            f"{owner}: unknown initializer {identifier!r}; expected one of {sorted(INITIALIZERS)}")
    return INITIALIZERS[identifier]
