r"""Winograd F(m x m, 3x3): a 3x3 stride-1 convolution with fewer multiplications.

Conv2D runs this algorithm for its 3x3 stride-1 layers on the CPU (see ``Conv2D.algorithm``);
it computes the same function as im2col + GEMM. docs/winograd.md derives it.

One output row, 1-D first: m outputs of a 3-tap filter g over a = m + 2 inputs d cost 3m
products directly, and a with Winograd's minimal filtering:

    y = A^T [ (G g) * (B^T d) ]        (* element-wise; B^T is a x a, G is a x 3, A^T is m x a)

F(2, 3) uses a = 4 products for 2 outputs, F(4, 3) a = 6 for 4. In 2-D the transforms act on
both axes: an a x a input tile d and a 3x3 filter g give the m x m output tile

    Y = A^T [ (G g G^T) * (B^T d B) ] A

with a^2 products instead of 9 m^2: 16 instead of 36 for F(2x2, 3x3), 36 instead of 144 for
F(4x4, 3x3). The sum over input channels can be taken in the transformed domain, entry by entry,
so with tiles stored as (a*a, T, C) (T = tiles in the batch) a layer is

    U[k] = (G g G^T)[k]           (a*a, C, F)   the kernel, transformed once per step
    V[k] = (B^T d B)[k]           (a*a, T, C)   input tiles at stride m, overlapping by 2 pixels
    M[k] = V[k] @ U[k]            (a*a, T, F)   a*a matrix products
    y    = A^T M A + b            (N, OH, OW, F)

Backward. Every step is linear, so each gradient is the adjoint (transpose) of its step, taken in
reverse order, given ``dy``:

    dM[k] = (A dy A^T)[k]          output transform, adjoint
    dU[k] = V[k]^T @ dM[k]         -> dK = G^T dU G (per (c, f)), db = sum of dy
    dV[k] = dM[k] @ U[k]^T         -> dx = sum over the tiles covering a pixel of B dV B^T

Blocks. The tiles V are 2.25 times the input for F(4x4) (36 entries for every 16 outputs), and
M, dM and dV are as large again. Forward and backward therefore run over blocks of a few images
whose tiles fit a core's cache (``BLOCK_BYTES``), as many blocks as a multiple of ``SUM_LANES`` so
that the threads get equal shares: one thread takes a block from the queue and runs
it from input to output (transform, products, transform) while its arrays are still in the cache;
the same work as whole-batch passes read each array back from memory (docs/performance.md has the
numbers). Forward keeps no tiles: backward transforms each block's input again, which in the cache
costs less than reading kept tiles back from memory, and holds no more than a few blocks at a time
(the seed CNN's tiles at 128x128 px would take 500 MiB, more than all its activations). In
backward, dU adds up the products of the blocks: consecutive blocks form at most ``SUM_LANES``
lanes, each lane adds its blocks in order, and the lanes are added in order at the end. The blocks
and lanes depend on the shapes only, so the bits do not depend on the thread count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..kernels.products import default_pool, stacked_matmul
from ..kernels.reference import winograd_tiles


@dataclass(frozen=True)
class TileTransforms:
    """The three matrices of F(m x m, 3x3): B^T (a x a), G (a x 3), A^T (m x a), with a = m + 2."""
    name: str
    bt: np.ndarray
    g: np.ndarray
    at: np.ndarray

    @property
    def m(self) -> int:
        return self.at.shape[0]


# Interpolation points 0, 1, -1 and infinity: every entry is 0, +-1 or +-1/2, exact in binary.
F2X2_3X3 = TileTransforms(
    "F(2x2, 3x3)",
    bt=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
    g=np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]]),
    at=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64))

# Points 0, 1, -1, 2, -2 and infinity (Lavin and Gray, 2016): 4x fewer products than direct,
# at the price of entries like 1/6 and 8 that round more in float32 (docs/winograd.md).
F4X4_3X3 = TileTransforms(
    "F(4x4, 3x3)",
    bt=np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], dtype=np.float64),
    g=np.array([[1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1]]),
    at=np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], dtype=np.float64))


# Points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity: 64 products per 36 outputs, 21% fewer than
# F(4x4)'s 36 per 16 where 6 divides the output (docs/winograd.md). B^T follows from A^T and G: the
# one matrix for which A^T [(G g) * (B^T d)] is the correlation of g and d for every g and d.
F6X6_3X3 = TileTransforms(
    "F(6x6, 3x3)",
    bt=np.array([[-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0],
                 [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
                 [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
                 [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
                 [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
                 [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
                 [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
                 [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]]),
    g=np.array([[-1, 0, 0],
                [-2 / 9, -2 / 9, -2 / 9],
                [-2 / 9, 2 / 9, -2 / 9],
                [1 / 90, 1 / 45, 2 / 45],
                [1 / 90, -1 / 45, 2 / 45],
                [32 / 45, 16 / 45, 8 / 45],
                [32 / 45, -16 / 45, 8 / 45],
                [0, 0, 1]]),
    at=np.array([[1, 1, 1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
                 [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
                 [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
                 [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
                 [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]]))


def fewest_products(out_h: int, out_w: int) -> TileTransforms:
    """F(4x4) or F(6x6), whichever makes fewer products for an OH x OW output (a*a per tile, the
    tiles past the edge counted whole); F(4x4), which rounds less, on a tie (at 16 or 32 px)."""
    def products(transforms):
        tiles_h, tiles_w = winograd_tiles(out_h, out_w, transforms.m)
        return transforms.bt.shape[0] ** 2 * tiles_h * tiles_w
    return min((F4X4_3X3, F6X6_3X3), key=products)


def kernel_transform(kernel, transforms: TileTransforms):
    """(3, 3, C, F) -> U of shape (a*a, C, F): G g G^T for every channel pair.

    As two matrix products over all channel pairs at once: G on the kernel's rows, then on its
    columns (``g @ t`` broadcasts over the a rows of t).
    """
    g = transforms.g.astype(kernel.dtype)
    a, (_, _, c, f) = g.shape[0], kernel.shape
    rows = (g @ kernel.reshape(3, 3 * c * f)).reshape(a, 3, c * f)  # G g
    return (g @ rows).reshape(a * a, c, f)  # (G g) G^T


def kernel_transform_adjoint(du, transforms: TileTransforms):
    """(a*a, C, F) -> (3, 3, C, F): G^T dU G, the gradient of the kernel from that of U."""
    g = transforms.g.astype(du.dtype)
    a, (_, c, f) = g.shape[0], du.shape
    cols = g.T @ du.reshape(a, a, c * f)  # dU G, (a, 3, C*F)
    return (g.T @ cols.reshape(a, 3 * c * f)).reshape(3, 3, c, f)  # G^T (dU G)


# A block's tiles weigh at most this much (or one image's, if more): a few times a core's L2 cache,
# so that the tiles stay in the caches between the input transform, the products and the output
# transform, while the kernel gradient's products still sum over enough tiles. On an AMD EPYC 7003
# (512 KiB of L2 per core), seed CNN layers at batch 32: 2 MiB was as fast as 1 MiB or faster for
# every layer shape at 16-48 px, forward and backward (backward up to 1.2x), and 4 or 8 MiB slower.
BLOCK_BYTES = 2 << 20
# The kernel gradient adds the blocks' products in at most this many lanes (one partial dU each,
# and at most PARTIAL_BYTES of them): enough pieces to share out among the threads. The number of
# blocks is a multiple of it (where the batch allows), so that the lanes, and the blocks, share out
# evenly among 2, 4 or 8 threads: 11 blocks of 3 images on 2 threads kept one of them busy with 18
# of the 32 images while the other waited.
SUM_LANES = 8
PARTIAL_BYTES = 32 << 20


def even_cut(length: int, count: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges cutting ``length`` into ``count`` consecutive parts whose sizes
    differ by one at most, the longer ones first (a queue of them ends on the short ones)."""
    size, longer = divmod(length, count)
    starts = [i * size + min(i, longer) for i in range(count + 1)]
    return list(zip(starts[:-1], starts[1:]))


def image_blocks(n: int, bytes_per_image: int) -> list[slice]:
    """The batch's ``n`` images cut into consecutive blocks whose tiles weigh at most
    ``BLOCK_BYTES`` (one image at least), as many as a multiple of ``SUM_LANES`` (``n`` at most);
    depends on the shapes only."""
    per_block = max(1, BLOCK_BYTES // max(bytes_per_image, 1))
    fewest = -(-n // per_block)
    count = min(n, -(-fewest // SUM_LANES) * SUM_LANES)
    return [slice(start, stop) for start, stop in even_cut(n, count)]


def sum_lanes(blocks: int, partial_bytes: int) -> list[range]:
    """The blocks' indices cut into consecutive lanes, each adding up one partial kernel gradient of
    ``partial_bytes``; depends on the shapes only."""
    lanes = max(1, min(SUM_LANES, blocks, PARTIAL_BYTES // max(partial_bytes, 1)))
    return [range(start, stop) for start, stop in even_cut(blocks, lanes)]


def _block_shape(block: slice, shape) -> tuple:
    return (block.stop - block.start, *shape[1:])


def forward(x, kernel, bias, padding, out_shape, transforms: TileTransforms):
    """The convolution of ``x`` (N, H, W, C); returns ``(y, cache)`` for ``backward``."""
    tiles = winograd_tiles(out_shape[1], out_shape[2], transforms.m)
    bt, at = transforms.bt.astype(x.dtype), transforms.at.astype(x.dtype)
    u = kernel_transform(kernel, transforms)
    a, channels = bt.shape[0], max(x.shape[3], out_shape[3])
    blocks = image_blocks(x.shape[0], a * a * tiles[0] * tiles[1] * channels * x.dtype.itemsize)
    y = np.empty(out_shape, dtype=x.dtype)

    def run(block: slice):
        v = kernels.winograd_input_transform(x[block], padding, tiles, bt)
        # on this thread: the blocks are the pieces
        kernels.winograd_output_transform(stacked_matmul(v, u), _block_shape(block, out_shape), bias, at, y[block])

    default_pool().run([lambda block=block: run(block) for block in blocks])
    return y, (x, blocks, u, padding, tiles, transforms)


def backward(dy, cache, input_gradient: bool = True):
    """Returns ``(dkernel, dbias, dx)`` for the upstream gradient ``dy`` (N, OH, OW, F); dx is
    None when ``input_gradient`` is False."""
    x, blocks, u, padding, tiles, transforms = cache
    bt, at = transforms.bt.astype(dy.dtype), transforms.at.astype(dy.dtype)
    dx = np.empty_like(x, dtype=dy.dtype) if input_gradient else None
    lanes = sum_lanes(len(blocks), u.nbytes)
    partial_du = [None] * len(lanes)
    # U^T laid out once: OpenBLAS's AVX-512 kernels multiply by a transposed view at ~0.65x the
    # rate of a contiguous matrix on an AMD EPYC (Zen 4); the AVX2 kernels at the same rate
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1)) if input_gradient else None

    def run(lane: int):
        for block in (blocks[index] for index in lanes[lane]):
            dm = kernels.winograd_output_transform_adjoint(dy[block], at)
            v = kernels.winograd_input_transform(x[block], padding, tiles, bt)  # again: see "Blocks"
            du = stacked_matmul(v.transpose(0, 2, 1), dm)
            partial_du[lane] = du if partial_du[lane] is None else np.add(partial_du[lane], du, out=partial_du[lane])
            if input_gradient:
                dv = stacked_matmul(dm, u_t)
                kernels.winograd_input_transform_adjoint(dv, _block_shape(block, x.shape), padding, tiles, bt,
                                                         dx[block])

    default_pool().run([lambda lane=lane: run(lane) for lane in range(len(lanes))])
    du = partial_du[0]
    for partial in partial_du[1:]:  # the lanes in their order
        du += partial
    dkernel = kernel_transform_adjoint(du, transforms)
    dbias = kernels.column_sums(dy.reshape(-1, dy.shape[-1]))
    return dkernel, dbias, dx
