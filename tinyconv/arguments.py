"""Checks for the arguments users give: one place, so that every constructor says the same thing.

Each check returns the value in its plain Python form (``int``, ``float``, ``bool``, ``str``) or
raises, naming the owner (``"Conv2D"``, ``"Adam"``, ...), the argument, what was expected and what
came:

- a value of the wrong kind (a string or a bool where a number goes, a float where an integer
  goes) raises ``TypeError``;
- a value of the right kind outside its range (negative, NaN, infinite, an unknown name) raises
  ``ValueError``.

NumPy scalars count as what they hold (``np.int64(3)`` is an integer, ``np.float32(0.5)`` a
number). Booleans are never numbers here, although Python treats ``True`` as ``1``: a flag passed
where a size goes is a mistake, not a request for size 1.
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np


def describe(value) -> str:
    """A value as messages show it: its repr and, for anything but plain numbers, its type."""
    text = repr(value.item()) if isinstance(value, np.generic) else repr(value)  # 3.0, not np.float64(3.0)
    if len(text) > 60:
        text = text[:57] + "..."
    if type(value) in (int, float, str, tuple, list):
        return text
    return f"{text} ({type(value).__name__})"


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def interval(low=None, high=None, low_open: bool = False, high_open: bool = False) -> str:
    """``"in [0, 1)"``, ``"> 0"``, ``">= 1"``... for messages."""
    def show(bound):
        return str(bound) if isinstance(bound, int) else f"{bound:g}"
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{show(low)}, {show(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {show(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {show(high)}"
    return ""


def _check_range(value, shown, name, owner, kind, low, high, low_open, high_open):
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        raise ValueError(f"{owner}: {name} must be {kind} {interval(low, high, low_open, high_open)}, "
                         f"got {describe(shown)}")


def integer(value, name: str, owner: str, low: int | None = None, high: int | None = None) -> int:
    """An ``int`` or NumPy integer (not a bool) in ``[low, high]``."""
    if not _is_integer(value):
        raise TypeError(f"{owner}: {name} must be an integer {interval(low, high)}".rstrip()
                        + f", got {describe(value)}")
    _check_range(value, value, name, owner, "an integer", low, high, False, False)
    return int(value)


def number(value, name: str, owner: str, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number (int, float or NumPy scalar; not a bool) in the given interval."""
    expected = f"a finite number {interval(low, high, low_open, high_open)}".rstrip()
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be {expected}, got {describe(value)}")
    try:
        as_float = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{owner}: {name} must be {expected}, got {describe(value)}") from None
    if not math.isfinite(as_float):
        raise ValueError(f"{owner}: {name} must be {expected}, got {describe(value)}")
    _check_range(as_float, value, name, owner, "a finite number", low, high, low_open, high_open)
    return as_float


def boolean(value, name: str, owner: str) -> bool:
    """``True`` or ``False`` (also NumPy's); a string such as ``"no"`` would be truthy, so it is refused."""
    if not _is_bool(value):
        raise TypeError(f"{owner}: {name} must be True or False, got {describe(value)}")
    return bool(value)


def one_of(value, name: str, owner: str, options) -> str:
    """One of a few names (``padding="same"``)."""
    if not isinstance(value, str) or value not in options:
        names = [repr(option) for option in options]
        expected = " or ".join(names) if len(names) <= 2 else f"one of {', '.join(names[:-1])} or {names[-1]}"
        raise ValueError(f"{owner}: {name} must be {expected}, got {describe(value)}")
    return value


def text(value, name: str, owner: str) -> str:
    """A non-empty string (a metric name, a layer name)."""
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be a string, got {describe(value)}")
    if not value:
        raise ValueError(f"{owner}: {name} must be a non-empty string, got ''")
    return value


def object_name(value, name: str, owner: str) -> str:
    """A layer's or a model's name: a non-empty string without ``/``, which separates the parts of
    the keys of weights files and checkpoints (Keras refuses it too)."""
    value = text(value, name, owner)
    if "/" in value:
        raise ValueError(f"{owner}: {name} cannot contain '/' (it separates layer and parameter names in "
                         f"weights files and checkpoints), got {value!r}")
    return value


def path(value, name: str, owner: str) -> str:
    """A file path: a non-empty ``str`` or ``os.PathLike`` of one."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{owner}: {name} must be a path (str or pathlib.Path), got {describe(value)}")
    value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be a text path, got {describe(value)}")
    if not value:
        raise ValueError(f"{owner}: {name} must be a non-empty path, got ''")
    return value


def seed(value, name: str, owner: str) -> int | None:
    """A random seed: None or an integer >= 0 (what ``np.random.default_rng`` takes)."""
    return None if value is None else integer(value, name, owner, low=0)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def sizes(value, name: str, owner: str, expected: str, length: int | None = None) -> tuple[int, ...]:
    """A tuple (list, 1-D array) of positive integers, of ``length`` when given; ``expected`` describes it."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (tuple, list)) or not all(_is_integer(v) for v in value):
        raise TypeError(f"{owner}: {name} must be {expected}, got {describe(value)}")
    if not value or (length is not None and len(value) != length) or any(v < 1 for v in value):
        raise ValueError(f"{owner}: {name} must be {expected}, got {describe(value)}")
    return tuple(int(v) for v in value)


def pair(value, name: str, owner: str) -> tuple[int, int]:
    """A positive integer or a pair of them (kernel size, strides, pool size): ``3`` means ``(3, 3)``."""
    if _is_integer(value):
        value = (value, value)
    return sizes(value, name, owner, "a positive integer or a pair of them", length=2)


def shape(value, name: str, owner: str) -> tuple[int, ...]:
    """A non-empty tuple of positive integers, such as an image shape ``(32, 32, 3)``."""
    return sizes(value, name, owner, "a tuple of positive integers like (32, 32, 3)")
