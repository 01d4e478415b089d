"""The distribution ``fit`` trains under: Keras 3's ``set_distribution`` / ``distribution``."""
from __future__ import annotations

from .single_process import SingleProcess

_SINGLE = SingleProcess()
_current: SingleProcess = _SINGLE


def set_distribution(value) -> None:
    """Train under ``value`` (a ``DataParallel``) from now on; None: back to one process."""
    global _current
    if value is not None and not isinstance(value, SingleProcess):
        raise TypeError(f"set_distribution: expected a tinyconv.distributed.DataParallel or None, "
                        f"got {type(value).__name__}")
    _current = _SINGLE if value is None else value


def distribution() -> SingleProcess:
    """The current distribution (a ``SingleProcess`` when none was set)."""
    return _current
