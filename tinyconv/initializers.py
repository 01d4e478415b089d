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


def glorot_uniform(shape):
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return random.generator("init").uniform(-limit, limit, size=shape)


def he_normal(shape):
    """Normal with std sqrt(2 / fan_in), truncated at two standard deviations (as Keras does).

    Truncation shrinks the spread, so Keras divides the std by 0.8796, the std of a unit normal
    truncated to [-2, 2]; we do the same so the kept samples have the intended variance.
    """
    fan_in, _ = compute_fans(shape)
    std = np.sqrt(2.0 / fan_in) / 0.87962566103423978
    rng = random.generator("init")
    values = rng.normal(0.0, std, size=shape)
    outside = np.abs(values) > 2 * std
    while outside.any():  # redraw the tails
        values[outside] = rng.normal(0.0, std, size=int(outside.sum()))
        outside = np.abs(values) > 2 * std
    return values


def zeros(shape):
    return np.zeros(shape)


def ones(shape):
    return np.ones(shape)


INITIALIZERS = {"glorot_uniform": glorot_uniform, "he_normal": he_normal, "ones": ones, "zeros": zeros}


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
