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

Memory. The tiles V are 2.25 times the input for F(4x4) (36 entries for every 16 outputs), and
M, dM and dV are as large again. Forward and backward therefore run over groups of images, so that
those arrays exist for one group at a time (and stay in the caches between the passes that write and
read them), and dU adds up the groups' products in their order (a fixed order: the groups depend on
the shapes only, so the bits do not depend on the thread count). Forward keeps each group's V for
backward while a layer's tiles are small; a layer with larger tiles keeps its input instead (which
the layer before holds anyway) and transforms each group's input again in backward: one more input
transform, instead of holding the tiles (at 128x128 px the seed CNN's tiles would take 500 MiB,
more than all its activations).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
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


# A group of images whose tiles weigh about this much (at least MIN_GROUP_IMAGES images, so that
# the kernels' loops over images still have work for every thread).
GROUP_BYTES = 16 << 20
MIN_GROUP_IMAGES = 8
# Forward keeps the tiles for backward while they weigh at most this much (per layer and batch).
KEPT_TILES_BYTES = 64 << 20


def image_groups(n: int, bytes_per_image: int) -> list[slice]:
    """The batch's ``n`` images cut into consecutive groups of even size whose tiles weigh about
    ``GROUP_BYTES``; depends on the shapes only."""
    per_group = max(MIN_GROUP_IMAGES, GROUP_BYTES // max(bytes_per_image, 1))
    size = -(-n // -(-n // per_group))
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def _tile_bytes_per_image(tiles, a: int, channels: int, dtype) -> int:
    return a * a * tiles[0] * tiles[1] * channels * np.dtype(dtype).itemsize


def _place(whole, group: slice, part, shape):
    """``part``, the rows ``group`` of an array of ``shape``, written into ``whole`` (made on the first
    call); a group of the whole batch is returned as it is, without a copy."""
    if group == slice(0, shape[0]):
        return part
    if whole is None:
        whole = np.empty(shape, dtype=part.dtype)
    whole[group] = part
    return whole


def forward(x, kernel, bias, padding, out_shape, transforms: TileTransforms):
    """The convolution of ``x`` (N, H, W, C); returns ``(y, cache)`` for ``backward``."""
    tiles = winograd_tiles(out_shape[1], out_shape[2], transforms.m)
    bt, at = transforms.bt.astype(x.dtype), transforms.at.astype(x.dtype)
    u = kernel_transform(kernel, transforms)
    per_image = _tile_bytes_per_image(tiles, bt.shape[0], max(x.shape[3], out_shape[3]), x.dtype)
    groups = image_groups(x.shape[0], per_image)
    keep_tiles = x.shape[0] * per_image <= KEPT_TILES_BYTES
    y, kept = None, []  # kept: each group's tiles, while they are small enough to keep
    for group in groups:
        v = kernels.winograd_input_transform(x[group], padding, tiles, bt)
        y_group = kernels.winograd_output_transform(kernels.matmul(v, u), (group.stop - group.start, *out_shape[1:]),
                                                    bias, at)
        y = _place(y, group, y_group, out_shape)
        if keep_tiles:
            kept.append(v)
    tiles_or_input = (kept, None) if keep_tiles else (None, x)
    return y, (*tiles_or_input, groups, u, x.shape, padding, tiles, transforms)


def backward(dy, cache, input_gradient: bool = True):
    """Returns ``(dkernel, dbias, dx)`` for the upstream gradient ``dy`` (N, OH, OW, F); dx is
    None when ``input_gradient`` is False."""
    kept, x, groups, u, x_shape, padding, tiles, transforms = cache
    bt, at = transforms.bt.astype(dy.dtype), transforms.at.astype(dy.dtype)
    du, dx = None, None
    for index, group in enumerate(groups):
        dm = kernels.winograd_output_transform_adjoint(dy[group], at)
        v = kept[index] if kept is not None else kernels.winograd_input_transform(x[group], padding, tiles, bt)
        du_group = kernels.matmul(v.transpose(0, 2, 1), dm)
        du = du_group if du is None else np.add(du, du_group, out=du)
        if input_gradient:
            dv = kernels.matmul(dm, u.transpose(0, 2, 1))
            del dm  # the group's largest arrays go before the next group's come
            dx_group = kernels.winograd_input_transform_adjoint(dv, (group.stop - group.start, *x_shape[1:]),
                                                                padding, tiles, bt)
            dx = _place(dx, group, dx_group, x_shape)
    dkernel = kernel_transform_adjoint(du, transforms)
    dbias = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    return dkernel, dbias, dx
