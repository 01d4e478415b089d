"""The endless, reproducible, resumable batches that ``ImageDataGenerator.flow`` and
``flow_from_directory`` serve (Keras's ``Iterator``)."""
from __future__ import annotations

import math

import numpy as np

from .. import arguments
from .. import random as tc_random


class BatchIterator:
    """Endless augmented, standardised batches over ``n`` samples; a subclass
    says how to read the samples of a batch (``read(rows)``: images (B, H, W, C) and their labels).

    As in Keras, ``next(it)`` never stops: one epoch is ``len(it) = ceil(n / batch_size)``
    batches, the last one partial, and every sample appears exactly once per epoch; a new
    permutation is drawn at each epoch. Batches are contiguous float32 (N, H, W, C); labels are
    float32. Without labels it yields ``x_batch`` alone.

    Reproducibility: the permutation of epoch e comes from the generator seeded by
    (shuffle_seed, e), the augmentation of batch b of epoch e from (augment_seed, e, b). With
    ``seed=None`` the two seeds are drawn once from ``tinyconv.random``'s "shuffle" and "augment"
    generators; with a seed they derive from it. ``get_state()`` / ``set_state()`` save and restore
    the position (JSON-serialisable), and ``set_epoch(e)`` starts at epoch e: a resumed run
    sees exactly the batches that an uninterrupted one would.
    """

    def __init__(self, generator, n: int, batch_size: int, shuffle: bool, seed, owner: str):
        self.batch_size = arguments.integer(batch_size, "batch_size", owner, low=1)
        self.shuffle = arguments.boolean(shuffle, "shuffle", owner)
        arguments.seed(seed, "seed", owner)
        self.generator = generator
        self.n = n
        if seed is None:
            self.shuffle_seed = int(tc_random.generator("shuffle").integers(2 ** 63))
            self.augment_seed = int(tc_random.generator("augment").integers(2 ** 63))
        else:
            self.shuffle_seed, self.augment_seed = int(seed), int(seed) + 1
        self.set_epoch(0)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        return self

    def __next__(self):
        return self.next_part(tc_random.whole_batch)[0]

    def next_part(self, part):
        """The next batch as ``(batch, rows, size)``: of its ``size`` samples, only the ``rows = part(size)``
        (a slice) this process trains on (``tinyconv.distributed``), augmented with the draws of the
        whole batch."""
        if self.batch_index >= len(self):
            self.set_epoch(self.epoch + 1)
        result = self.part_of(self.batch_index, part)
        self.batch_index += 1
        return result

    def __getitem__(self, index: int):
        """Batch ``index`` of the current epoch (the same whenever asked)."""
        return self.part_of(index, tc_random.whole_batch)[0]

    def part_of(self, index: int, part):
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: batch index {index} out of range [0, {len(self)})")
        samples = self.index_array[index * self.batch_size:(index + 1) * self.batch_size]
        rows = part(len(samples))
        rng = np.random.default_rng([self.augment_seed, self.epoch, index])
        images, labels = self.read(samples[rows])
        x_batch = self.generator.augment_batch(np.asarray(images, dtype=np.float32), rng, rows, len(samples))
        return (x_batch if labels is None else (x_batch, labels)), rows, len(samples)

    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch`` (0-based) and draw its permutation."""
        self.epoch = int(epoch)
        self.batch_index = 0
        if self.shuffle:
            self.index_array = np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(self.n)
        else:
            self.index_array = np.arange(self.n)

    def get_state(self) -> dict:
        """The position and seeds, JSON-serialisable, for a checkpoint."""
        return {"epoch": self.epoch, "batch_index": self.batch_index,
                "shuffle_seed": self.shuffle_seed, "augment_seed": self.augment_seed}

    def set_state(self, state: dict) -> None:
        """Restore a position saved by ``get_state``."""
        self.shuffle_seed, self.augment_seed = int(state["shuffle_seed"]), int(state["augment_seed"])
        self.set_epoch(state["epoch"])
        self.batch_index = int(state["batch_index"])
