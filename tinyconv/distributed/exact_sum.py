r"""Sums whose result does not depend on their order: fixed point in 64-bit integers.

Floating-point addition is not associative: (a + b) + c and a + (b + c) can differ in the last
bit, so an Allreduce, whose order of additions depends on the number of ranks and on the MPI
library, would give K ranks a gradient that differs from one rank's in the last bits. Training
magnifies such bits: Adam divides by sqrt(v) + epsilon, so a weight whose gradient is about
epsilon (1e-7) moves by a good fraction of the learning rate in either direction depending on them.

Integers add exactly, in any order. Each array of a segment (one gradient, say) is written as

    q = rint(v * 2^(F - E)),      |v| < 2^E for every addend v of the segment, F = 62 - ceil(log2 P),

with E agreed by every rank (a max over them) before any addend is converted, so that the sum of up
to P addends stays below 2^62; the sum Q of the q is exact and comes back as Q * 2^(E - F). An
addend is rounded to 2^(E - F), about 2^-58 of the largest one: far below float32's own rounding.
The same addends, summed in any order and grouping, give the same bits.
"""
from __future__ import annotations

import math

import numpy as np

NOT_FINITE = np.iinfo(np.int64).max  # an exponent that says: some addend is NaN or inf
EMPTY = np.iinfo(np.int64).min  # the exponent of a segment with no nonzero addend yet


def exponents(addends: list[list[np.ndarray]]) -> np.ndarray:
    """For each segment, the smallest E with |v| < 2^E for all its addends (``addends[a][s]``: addend
    a of segment s); ``NOT_FINITE`` where one holds NaN or inf, ``EMPTY`` where all are 0."""
    result = np.full(len(addends[0]) if addends else 0, EMPTY, dtype=np.int64)
    for arrays in addends:
        for s, v in enumerate(arrays):
            peak = float(np.max(np.abs(v))) if v.size else 0.0
            if not math.isfinite(peak):
                result[s] = NOT_FINITE
            elif peak > 0:
                result[s] = max(result[s], math.frexp(peak)[1])  # peak = m * 2^e, 0.5 <= m < 1
    return result


def fraction_bits(count: int) -> int:
    """F: the bits below 2^E, leaving room for ``count`` addends below 2^62."""
    return 62 - max(0, math.ceil(math.log2(count)))


def add_fixed(total: np.ndarray, arrays: list[np.ndarray], exps: np.ndarray, bits: int) -> None:
    """``total`` (int64, the arrays' sizes end to end) += one addend's arrays in fixed point, segment
    s scaled by 2^(bits - exps[s]). The arrays are scaled in place: pass copies."""
    start = 0
    for v, e in zip(arrays, exps):
        if e != EMPTY:
            flat = v.reshape(-1)
            np.ldexp(flat, int(bits - e), out=flat)  # exact: a power of two, and below 2^bits
            np.rint(flat, out=flat)
            total[start:start + flat.size] += flat.astype(np.int64)
        start += v.size


def from_fixed(total: np.ndarray, like: list[np.ndarray], exps: np.ndarray, bits: int) -> list[np.ndarray]:
    """The summed buffer back as arrays of the shapes and dtypes of ``like``."""
    out, start = [], 0
    for v, e in zip(like, exps):
        shift = 0 if e == EMPTY else int(e - bits)
        chunk = np.ldexp(total[start:start + v.size].astype(np.float64), shift)
        out.append(chunk.reshape(np.shape(v)).astype(v.dtype, copy=False))
        start += v.size
    return out
