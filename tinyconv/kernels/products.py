"""Matrix products whose bits do not depend on the thread count, and that share a busy machine.

Why. OpenBLAS's threaded matrix product cuts each product into one piece per thread, and its AVX2
kernels round a piece differently from the whole: a float32 step on 1 thread and on 2 threads
differed by up to 1e-4 on the seed CNN's products, so the same seed trained to different weights
on a loaded machine. Its threads also wait for each other by spinning, so a core that another
program takes stalls every product.

How. OpenBLAS runs on one thread (``cpu_tuning`` pins it when tinyconv is imported), and the
splitting is done here, in pieces that depend only on the shapes:

- a product ``(M, K) @ (K, N)`` is cut along the rows of the result (M), along its columns (N),
  or along the sum (K) into partial products that are added in a fixed order: whichever of the
  three moves the fewest elements. A piece of rows reads all of B, a piece of columns all of A, and
  a piece of the sum its own slices of both but writes a whole (M, N) partial result: the first
  layer's kernel gradient, (27, 73728) @ (73728, 64) at 48 px, took 5.2 ms in two pieces of rows
  (each reading the whole upstream gradient) and 3.1 ms in 16 partial sums.

Each piece is one single-threaded BLAS call, and the same call whichever thread makes it. The
caller and ``threads - 1`` helper threads take pieces from one queue until none is left: the
result is the same bits on 1 thread or 16, and a thread whose core another program has taken
simply takes fewer pieces; nobody waits for it but the caller at the end of the product.
``numpy.matmul`` releases the GIL while BLAS works, so Python threads run the pieces in parallel.

The readable twin is ``numpy.matmul`` itself (``reference.matmul``); the tests hold the two equal
to rounding, and this one equal to itself bit for bit across thread counts.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PIECE_FLOPS = 1 << 22  # work per piece, ~0.1 ms on one core: small enough for the queue to balance
SUM_PIECE_ELEMENTS = 1 << 18  # a column sum's piece: 1 MiB of float32, memory-bound like any sum
ALIGN = 16  # rows or columns per piece are a multiple of this (the BLAS kernels' register blocks)
MOST_PARTIAL_SUMS = 16  # a split sum keeps at most this many partial results in memory
USER_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def default_threads(environ=os.environ) -> int:
    """The pool's width: the first of ``USER_THREAD_VARIABLES`` that is set (what the user asked
    of BLAS), else the cores this process may run on."""
    for name in USER_THREAD_VARIABLES:
        value = environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pieces(length: int, flops_per_unit: int, smallest: int, per_piece: int = PIECE_FLOPS) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges cutting ``length`` units into pieces of about ``per_piece`` flops,
    each a multiple of ``smallest`` long (the last one shorter). Depends on the shapes only."""
    size = max(smallest, -(-per_piece // max(flops_per_unit, 1)))
    size = -(-size // smallest) * smallest
    return [(start, min(length, start + size)) for start in range(0, length, size)]


class ProductPool:
    """``threads - 1`` helper threads that, with the caller, run a list of pieces from one queue."""

    def __init__(self, threads: int):
        self.threads = threads
        self.helpers = ThreadPoolExecutor(threads - 1, thread_name_prefix="tinyconv-product") if threads > 1 else None

    def run(self, work: list) -> None:
        """Call every function in ``work`` once; returns when all have returned."""
        if self.helpers is None or len(work) < 2:
            for piece in work:
                piece()
            return
        lock, queue = threading.Lock(), iter(work)

        def drain():
            while True:
                with lock:
                    piece = next(queue, None)
                if piece is None:
                    return
                piece()

        helpers = [self.helpers.submit(drain) for _ in range(min(self.threads, len(work)) - 1)]
        try:
            drain()
        finally:  # the helpers write into the caller's arrays: wait for them even on an error
            for helper in helpers:
                helper.result()


_pool = None


def default_pool() -> ProductPool:
    global _pool
    if _pool is None:
        _pool = ProductPool(default_threads())
    return _pool


def cut(a_shape, b_shape) -> tuple[str, list[tuple[int, int]]]:
    """How ``matmul`` cuts a product of these shapes: ``("rows" | "columns" | "sum" | "whole",
    pieces)``, of the ways that give more than one piece the one whose pieces read and write the
    fewest elements (the earlier in that order on a tie)."""
    (m, k), n = a_shape, b_shape[1]
    # (kind, length cut, flops per unit of it, smallest piece, elements moved once, and per piece)
    ways = (("rows", m, 2 * k * n, ALIGN, m * k, k * n),  # every piece reads all of B
            ("columns", n, 2 * m * k, ALIGN, k * n, m * k),  # every piece reads all of A
            ("sum", k, 2 * m * n, max(ALIGN, -(-k // MOST_PARTIAL_SUMS)), m * k + k * n, m * n))  # writes a partial
    candidates = []
    for order, (kind, length, flops, smallest, once, per_piece) in enumerate(ways):
        split = pieces(length, flops, smallest)
        if len(split) > 1:
            candidates.append((once + len(split) * per_piece, order, kind, split))
    if not candidates:
        return "whole", [(0, k)]
    _, _, kind, split = min(candidates)
    return kind, split


def matmul(a, b, bias=None, pool: ProductPool | None = None):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N), plus ``bias`` (N,) on every row if given; a
    new array. Each piece of rows adds the bias to its rows while they are still in the cache,
    instead of one more pass over the whole result on one thread. (Winograd's stacks of a*a
    products are ``stacked_matmul``, one block of images on each of the pool's threads.)"""
    pool = pool or default_pool()
    out = np.empty(a.shape[:-1] + b.shape[-1:], dtype=np.result_type(a, b))
    kind, split = cut(a.shape, b.shape)
    if kind == "rows":
        pool.run([_piece(a[i:j], b, out[i:j], bias) for i, j in split])
        return out
    if kind == "columns":
        pool.run([_piece(a, b[:, i:j], out[:, i:j], None if bias is None else bias[i:j]) for i, j in split])
        return out
    if kind == "sum":
        partial = np.empty((len(split), *out.shape), dtype=out.dtype)
        pool.run([_piece(a[:, i:j], b[i:j], partial[p], None) for p, (i, j) in enumerate(split)])
        np.add.reduce(partial, axis=0, out=out)  # one partial after the other: a fixed order
    else:
        np.matmul(a, b, out=out)
    if bias is not None:
        out += bias
    return out


def _piece(a, b, out, bias):
    def product():
        np.matmul(a, b, out=out)
        if bias is not None:
            np.add(out, bias, out=out)
    return product


# OpenBLAS's AVX-512 single-precision product has a kernel of its own for small matrices (M*K*N at
# most 10^6) that packs neither operand; larger ones are packed first. One block's 128-channel
# products, 64 x 128 @ 128 x 128, ran at 70-88 GFLOP/s on an AMD EPYC (Zen 4) and at 100-110 in
# two halves of 64 columns; 64-channel blocks (128 x 64 @ 64 x 64) are small already.
SMALL_PRODUCT = 10 ** 6


def stacked_matmul(a, b):
    """``numpy.matmul`` of stacks (S, M, K) @ (S, K, N): one BLAS call per matrix of the stack, on
    the calling thread (Winograd's blocks are the pool's pieces, ``layers/winograd.py``), in slices
    of columns halved (``ALIGN`` wide at least) until each product is small (see ``SMALL_PRODUCT``)
    where that is possible."""
    m, k = a.shape[1:]
    n = width = b.shape[2]
    while m * k * width > SMALL_PRODUCT and width > ALIGN:
        width = -(-width // 2 // ALIGN) * ALIGN
    if width == n or m * k * width > SMALL_PRODUCT:
        return np.matmul(a, b)
    out = np.empty((*a.shape[:2], n), dtype=np.result_type(a, b))
    for start in range(0, n, width):
        np.matmul(a, b[:, :, start:start + width], out=out[:, :, start:start + width])
    return out


def column_sums(a, pool: ProductPool | None = None):
    """``a.sum(axis=0)`` for 2-D ``a``: partial sums of consecutive rows on the pool's threads (the
    pieces depend on the shape only), added in their order. A bias's gradient, the sum of the
    upstream gradient over every position, on all cores instead of one."""
    pool = pool or default_pool()
    split = pieces(a.shape[0], a.shape[1], 1, SUM_PIECE_ELEMENTS)
    if len(split) == 1:
        return a.sum(axis=0)
    partial = np.empty((len(split), a.shape[1]), dtype=a.dtype)
    pool.run([lambda p=p, i=i, j=j: np.sum(a[i:j], axis=0, out=partial[p]) for p, (i, j) in enumerate(split)])
    return np.add.reduce(partial, axis=0)
