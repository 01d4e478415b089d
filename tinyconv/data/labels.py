"""Class indices to one-hot rows: Keras's ``to_categorical``."""
from __future__ import annotations

import numpy as np

from .. import arguments


def to_categorical(x, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """Class indices ``x`` (any shape) as one-hot rows, shape ``x.shape + (num_classes,)``.

    As Keras: a trailing axis of 1 is dropped first ((N, 1) -> (N, num_classes)), and
    ``num_classes=None`` means ``max(x) + 1``. ``dtype`` is Keras 2's argument (Keras 3 returns float64).
    """
    owner = "to_categorical"
    indices = np.asarray(x)
    if indices.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: expected class indices (whole numbers), got dtype {indices.dtype}")
    if indices.ndim > 1 and indices.shape[-1] == 1:
        indices = indices.reshape(indices.shape[:-1])
    if indices.size and (not np.isfinite(indices).all() or (indices != np.round(indices)).any()):
        raise ValueError(f"{owner}: class indices must be whole numbers, got values such as "
                         f"{indices[indices != np.round(indices)].ravel()[:3].tolist()}")
    if (indices < 0).any():
        raise ValueError(f"{owner}: class indices must be >= 0, got {indices[indices < 0].ravel()[:3].tolist()}")
    if num_classes is None:
        num_classes = int(indices.max()) + 1 if indices.size else 0
    else:
        num_classes = arguments.integer(num_classes, "num_classes", owner, low=1)
        if indices.size and indices.max() >= num_classes:
            raise ValueError(f"{owner}: class index {int(indices.max())} needs num_classes > {int(indices.max())}, "
                             f"got num_classes={num_classes}")
    rows = np.zeros((indices.size, num_classes), dtype=dtype)
    rows[np.arange(indices.size), indices.reshape(-1).astype(np.int64)] = 1
    return rows.reshape(*indices.shape, num_classes)
