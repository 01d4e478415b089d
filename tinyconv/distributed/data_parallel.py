"""Data parallelism over MPI: K processes (ranks), one model each, one batch shared.

Every rank holds the same weights. A batch of B samples is cut into P parts (``parts``, fixed
whatever K is) of n_p samples, and each rank takes a contiguous run of parts. For each of its
parts a rank runs forward and backward alone and gets the gradient of that part's mean loss,
g_p = (1/n_p) sum_{i in p} grad l_i. The gradient of the whole batch's mean loss is their weighted
sum

    g = (1/B) sum_i grad l_i = sum_p (n_p / B) g_p,

which one Allreduce (a sum over the ranks, the result on every rank) computes from each rank's
share of it. Every rank then applies the same optimizer step to the same weights with the same
gradient, so the weights stay equal without ever being sent again. The same buffer carries the
step's logs (the loss and metrics, weighted alike) and BatchNorm's moving statistics: one
contiguous buffer, one Allreduce per step (and a short one before it, see below).

Exact, not merely close: with the same ``parts``, 1, 2 or 4 ranks give the same weights bit for
bit, because nothing depends on how the parts are spread over the ranks:

- a part is always the same samples, computed in a pass of its own: a matrix product's rounding
  depends on how many rows it has, so one pass over two parts would round differently;
- the sum over parts is exact (``exact_sum.py``: 64-bit fixed point, whose scale the short
  Allreduce agrees on), so its order and grouping do not matter;
- shuffling is drawn from the seed, the same on every rank; augmentation and dropout are drawn for
  the whole batch on every rank and each part keeps its own samples' rows
  (``tinyconv.random.global_batch``);
- BatchNorm normalises each part with that part's statistics (Keras's ``synchronized=False``, with
  parts for ranks); the moving statistics are the parts' weighted mean.

It costs a pass per part (P / K of them on each rank; ``parts=K`` is the fastest, and then exact
only against other runs with as many parts) and 8 bytes per parameter in the Allreduce.

A rank that stops answering (it died or hangs) would leave the others waiting forever inside a
collective. Every wait here polls against ``timeout``; when it runs out the rank says so and
aborts the whole job (``MPI_Abort``). The files a run wrote before are whole: they are written
atomically, by rank 0 only. Under ``mpiexec`` a rank's stdout and stderr are pipes that the launcher
reads and forwards; an abort that reaches the launcher before it has read the rank's last message
would lose that message, so the rank first waits (a few seconds at most) until its pipes are empty.
"""
from __future__ import annotations

import math
import os
import stat
import struct
import sys
import time

import numpy as np

from .. import arguments, backend, random
from . import exact_sum
from .single_process import SingleProcess

POLL_SECONDS = 1e-4  # between two checks of a pending collective: far below a step's time
DRAIN_SECONDS = 5.0  # at most, for the launcher to read a rank's last words before the abort


class DataParallel(SingleProcess):
    """Train on every rank of an MPI job (``mpiexec -n K python script.py``).

    Parameters
    ----------
    parts : the parts each batch is cut into, at least K; runs with the same ``parts`` agree bit for
        bit whatever their number of ranks. Default: 4, or K when there are more ranks.
    timeout : seconds a rank waits for the others inside one collective before it aborts the job.
    comm : an ``mpi4py`` communicator; default ``MPI.COMM_WORLD``.

    Use: ``tinyconv.distributed.set_distribution(DataParallel())`` before ``fit``, on every rank,
    with the same seed, model and data on each (see docs/data-parallel.md).
    """

    def __init__(self, parts: int | None = None, timeout: float = 120.0, comm=None):
        self.timeout = arguments.number(timeout, "timeout", "DataParallel", low=0, low_open=True)
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("tinyconv.distributed.DataParallel needs mpi4py and an MPI library: "
                              "pip install 'tinyconv[mpi]' (mpi4py with the mpich wheel)") from exc
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.num_ranks = self.comm.Get_size()
        self.is_writer = self.rank == 0
        self.parts = max(4, self.num_ranks) if parts is None else arguments.integer(parts, "parts", "DataParallel",
                                                                                       low=1)
        if self.parts < self.num_ranks:
            raise ValueError(f"DataParallel: parts={self.parts} is fewer than the {self.num_ranks} ranks; every "
                             f"rank needs a part of each batch: pass parts={self.num_ranks} or more")

    def __repr__(self) -> str:
        return f"DataParallel(rank {self.rank} of {self.num_ranks}, parts={self.parts}, timeout={self.timeout} s)"

    def _bounds(self, size: int) -> list[int]:
        """Where the parts of a batch of ``size`` samples start (and the last one ends)."""
        return [size * j // self.parts for j in range(self.parts + 1)]

    def _my_parts(self) -> range:
        return range(self.parts * self.rank // self.num_ranks, self.parts * (self.rank + 1) // self.num_ranks)

    def part(self, size: int) -> slice:
        bounds, mine = self._bounds(size), self._my_parts()
        return slice(bounds[mine.start], bounds[mine.stop])

    def check(self, data, owner: str, training: bool = False, custom_step: bool = False) -> None:
        if backend.get_device() != "cpu":
            raise ValueError(f"{owner}: data-parallel training runs on the CPU (each rank one process); "
                             f"the device is {backend.get_device()!r}: call tinyconv.set_device('cpu')")
        if custom_step:
            raise TypeError(f"{owner}: this model has a train_step of its own, and data-parallel training "
                            "averages the gradients inside Model.train_step; train it in one process")
        if not hasattr(data, "next_part"):
            raise TypeError(f"{owner}: data-parallel training shares each batch out by its samples, which "
                            f"needs arrays, ImageDataGenerator.flow or flow_from_directory; got "
                            f"{type(data).__name__}")
        smallest = data.n % data.batch_size or data.batch_size
        if training and smallest < self.parts:  # evaluate lets a rank sit out a small batch
            raise ValueError(f"{owner}: a batch of {smallest} samples (the last of each epoch: {data.n} samples "
                             f"in batches of {data.batch_size}) cannot be cut into the {self.parts} parts of "
                             f"data-parallel training; choose a batch size that leaves at least {self.parts} "
                             "samples in every batch")

    def begin(self, model) -> None:
        """Every rank starts from rank 0's weights."""
        weights = model.get_weights()
        if weights:
            buffer = np.concatenate([np.ravel(w).astype(np.float64) for w in weights])
            self._wait(self.comm.Ibcast(buffer, root=0), "broadcasting the weights")
            model.set_weights(_unpack(buffer, weights))

    def step(self, compute, x, y, moving: list, rewind) -> tuple[list, dict]:
        where = random.global_batch_part()
        if where is None:
            raise RuntimeError("DataParallel: train_step runs inside fit, which shares each batch out among the "
                               "ranks; call fit, or set_distribution(None) to step in one process")
        size = where[1]
        bounds, mine = self._bounds(size), self._my_parts()
        start = bounds[mine.start]
        addends, names = [], []
        for j in mine:
            rewind()  # every part starts from the step's moving statistics and random draws
            with random.global_batch(slice(bounds[j], bounds[j + 1]), size):
                gradients, logs = compute(x[bounds[j] - start:bounds[j + 1] - start],
                                          y[bounds[j] - start:bounds[j + 1] - start])
            share = (bounds[j + 1] - bounds[j]) / size
            names = list(logs)
            addends.append([g * share for g in gradients] + [m * share for m in moving]
                           + [np.array([logs[name] * share for name in names])])
        # The scale of each segment, agreed by all ranks (and whether any addend is NaN or inf).
        exps = exact_sum.exponents(addends)
        agreed = np.empty_like(exps)
        self._wait(self.comm.Iallreduce(exps, agreed, op=self.MPI.MAX), "agreeing on the gradients' scale")
        if (agreed == exact_sum.NOT_FINITE).any():  # the step is refused: nothing to sum
            return gradients, dict.fromkeys(names, math.nan)
        bits = exact_sum.fraction_bits(self.parts)
        mine_total = np.zeros(sum(v.size for v in addends[0]), dtype=np.int64)
        for arrays in addends:
            exact_sum.add_fixed(mine_total, arrays, agreed, bits)
        total = np.empty_like(mine_total)
        self._wait(self.comm.Iallreduce(mine_total, total, op=self.MPI.SUM), "summing the gradients")
        # Scaled in place, the addends still have the shapes and dtypes the sums come back in.
        summed = exact_sum.from_fixed(total, addends[0], agreed, bits)
        for target, value in zip(moving, summed[len(gradients):-1]):
            target[...] = value
        return summed[:len(gradients)], dict(zip(names, summed[-1].tolist()))

    def agree(self, flag: bool) -> bool:
        mine, anyone = np.array([int(flag)], dtype=np.int32), np.empty(1, dtype=np.int32)
        self._wait(self.comm.Iallreduce(mine, anyone, op=self.MPI.MAX), "agreeing whether to stop")
        return bool(anyone[0])

    def sum_over_ranks(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=np.float64)
        total = np.empty_like(values)
        self._wait(self.comm.Iallreduce(values, total, op=self.MPI.SUM), "summing the validation")
        return total

    def broadcast_text(self, text: str) -> str:
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8) if self.is_writer else None
        size = np.array([0 if data is None else data.size], dtype=np.int64)
        self._wait(self.comm.Ibcast(size, root=0), "sharing rank 0's text")
        received = data.copy() if data is not None else np.empty(int(size[0]), dtype=np.uint8)
        self._wait(self.comm.Ibcast(received, root=0), "sharing rank 0's text")
        return received.tobytes().decode("utf-8")

    def _wait(self, request, what: str) -> None:
        """Wait for a collective; after ``timeout`` seconds without it, say so and abort the job."""
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                print(f"tinyconv.distributed: rank {self.rank} of {self.num_ranks} waited {self.timeout:g} s "
                      f"for the other ranks while {what}: one of them has died or hangs. Stopping the whole "
                      "job; the files written before are whole (a TrainingCheckpoint resumes the run, on any "
                      "number of ranks).", file=sys.stderr, flush=True)
                sys.stdout.flush()
                _wait_until_read(sys.stdout, sys.stderr)
                self.comm.Abort(1)
            time.sleep(POLL_SECONDS)


def _wait_until_read(*streams) -> None:
    """Wait until whoever reads these streams' pipes has taken all that was written to them (at
    most ``DRAIN_SECONDS``); streams that are not pipes (a terminal, a file) have nothing to wait for."""
    if os.name != "posix":
        return
    pipes = [s.fileno() for s in streams if stat.S_ISFIFO(os.fstat(s.fileno()).st_mode)]
    deadline = time.monotonic() + DRAIN_SECONDS
    while any(map(_unread_bytes, pipes)) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def _unread_bytes(pipe: int) -> int:
    """The bytes in a pipe that its reader has not taken yet (FIONREAD, asked of the writing end)."""
    import fcntl  # POSIX only, as pipes that someone else reads
    import termios
    return struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, bytes(4)))[0]


def _unpack(buffer: np.ndarray, like: list) -> list:
    """``buffer`` cut into arrays of the shapes and dtypes of ``like``."""
    out, start = [], 0
    for a in like:
        out.append(buffer[start:start + a.size].reshape(a.shape).astype(a.dtype, copy=False))
        start += a.size
    return out
