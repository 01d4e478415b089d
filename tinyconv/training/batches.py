"""Input checks and batching for ``fit``, ``evaluate`` and ``predict``.

``ArrayIterator`` serves arrays the way ``ImageDataGenerator.flow`` serves images: an endless
stream of ``(x_batch, y_batch)`` with ``len()`` batches per pass and a new permutation (from the
seeded "shuffle" generator) at the start of each pass. Its position can be saved and restored,
so a resumed run draws exactly the batches an uninterrupted run would have drawn.
"""
from __future__ import annotations

import numpy as np

from .. import arguments, random


def check_images(x, owner: str, rank: int | None = 4) -> None:
    """Fail clearly unless ``x`` is a finite numeric array of ``rank`` axes (4: images (N, H, W, C);
    None: any batch (N, ...), for a model whose input shape is not known yet) with N >= 1."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{owner}: expected a NumPy array of images (N, H, W, C), got {type(x).__name__}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: expected numeric images, got dtype {x.dtype}")
    if rank == 4 and x.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D batch of images (N, H, W, C), got shape {tuple(x.shape)}")
    if x.ndim < 2 or (rank is not None and x.ndim != rank):
        raise ValueError(f"{owner}: expected a {rank or 'at least 2'}-D batch of inputs (N, ...), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{owner}: expected at least one image, got 0")
    if x.dtype.kind == "f":
        # Chunked so that the check never needs a second full-size (boolean) array.
        for start in range(0, x.shape[0], 256):
            chunk = x[start:start + 256]
            if not np.isfinite(chunk).all():
                where = start + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
                raise ValueError(f"{owner}: image {where} contains NaN or inf pixels")


def check_labels(y, n: int, owner: str) -> None:
    """Fail clearly unless ``y`` is an (n, L) array of finite values in [0, 1]."""
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"{owner}: expected a NumPy array of labels (N, L), got {type(y).__name__}")
    if y.ndim != 2:
        raise ValueError(f"{owner}: expected 2-D labels (N, L), got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"{owner}: {n} images but {y.shape[0]} label rows; expected the same N")
    check_label_range(y, owner)


def check_label_range(y, owner: str) -> None:
    """Fail clearly unless every label lies in [0, 1] (NaN does not); NumPy or CuPy arrays."""
    inside = (y >= 0) & (y <= 1)
    if not bool(inside.all()):
        bad = y[~inside]
        raise ValueError(f"{owner}: labels must lie in [0, 1], got values such as {bad.ravel()[:3].tolist()}")


class ArrayIterator:
    """Endless ``(x_batch, y_batch)`` batches of arrays (``x_batch`` alone when ``y`` is None);
    ``len()`` is ``ceil(N / batch_size)``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int = 32, shuffle: bool = True):
        self.x, self.y = x, y
        self.batch_size = arguments.integer(batch_size, "batch_size", "ArrayIterator", low=1)
        self.shuffle = shuffle
        self.n = len(x)
        self.order = np.arange(self.n)
        self.position = 0  # batches served in the current pass

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.next_part(random.whole_batch)[0]

    def next_part(self, part):
        """The next batch as ``(batch, rows, size)``: of its ``size`` samples only the ``rows = part(size)``
        (a slice), the share of this process in data-parallel training (``tinyconv.distributed``)."""
        if self.position == 0 and self.shuffle:
            self.order = random.generator("shuffle").permutation(self.n)
        samples = self.order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
        self.position = (self.position + 1) % len(self)
        rows = part(len(samples))
        index = samples[rows]
        return (self.x[index] if self.y is None else (self.x[index], self.y[index])), rows, len(samples)

    def get_state(self) -> dict:
        return {"order": self.order.copy(), "position": self.position}

    @staticmethod
    def check_state(state, owner: str) -> None:
        """Raise ``ValueError`` unless ``state`` looks like a ``get_state()`` (a permutation and a position)."""
        if not isinstance(state, dict) or set(state) != {"order", "position"}:
            raise ValueError(f"{owner}: expected the state of the batches fit draws from arrays "
                             f"(order, position), got {sorted(state) if isinstance(state, dict) else state!r}; "
                             "the state of an iterator such as ImageDataGenerator.flow is restored with data=")
        order, position = np.asarray(state["order"]), state["position"]
        if order.ndim != 1 or order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(len(order))):
            raise ValueError(f"{owner}: the saved batch order is not a permutation of the samples")
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position < max(len(order), 1):
            raise ValueError(f"{owner}: the saved batch position {position!r} is out of range")

    def set_state(self, state: dict) -> None:
        self.check_state(state, "ArrayIterator.set_state")
        order = np.asarray(state["order"])
        if order.shape != (self.n,):
            raise ValueError(f"ArrayIterator.set_state: the saved order covers {order.shape[0]} samples, "
                             f"these arrays hold {self.n}")
        self.order, self.position = order, int(state["position"])
