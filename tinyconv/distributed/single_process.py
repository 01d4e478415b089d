"""Training in one process: what ``fit`` asks of a distribution, answered for a single rank.

``fit``, ``evaluate`` and ``train_step`` talk to the current distribution (``distribution()``) at a
few points, and this class is what they get when none is set: the batch is wholly this process's,
nothing needs averaging, every decision is already agreed and this process writes the files. So
single-process training runs the same code as data-parallel training, with these answers.
"""
from __future__ import annotations

import numpy as np

from .. import random


class SingleProcess:
    """One rank: the identity at every point where data-parallel training communicates."""

    rank = 0
    num_ranks = 1
    is_writer = True  # the rank that writes files and prints progress

    def part(self, size: int) -> slice:
        """The rows of a batch of ``size`` samples that this rank trains on."""
        return random.whole_batch(size)

    def check(self, data, owner: str, training: bool = False, custom_step: bool = False) -> None:
        """Refuse, before anything changes, what ``fit`` (``training``) or ``evaluate`` could not share
        out: ``data`` (their batches) and a ``train_step`` of the model's own (``custom_step``)."""

    def begin(self, model) -> None:
        """Called by ``fit`` before its first epoch (after a checkpoint is restored)."""

    def step(self, compute, x, y, moving: list, rewind) -> tuple[list, dict]:
        """A training step's gradients and logs: ``compute(x, y)`` (forward and backward) on the batch.
        ``moving``: the statistics a training pass moves (BatchNorm's), ``rewind()``: puts them and
        the random generators back to the start of the step (data parallelism needs both)."""
        return compute(x, y)

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is true on any (Ctrl-C reaches the ranks at different batches)."""
        return flag

    def sum_over_ranks(self, values: np.ndarray) -> np.ndarray:
        """The element-wise sum of ``values`` (float64) over the ranks."""
        return values

    def broadcast_text(self, text: str) -> str:
        """Rank 0's ``text`` on every rank (a run folder's name, chosen once)."""
        return text
