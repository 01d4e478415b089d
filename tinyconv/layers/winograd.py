r"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 16 products per 2x2 outputs instead of 36.

Conv2D runs this algorithm for its 3x3 stride-1 layers on the CPU (see ``Conv2D.algorithm``);
it computes the same function as im2col + GEMM, with 2.25x fewer multiplications.

One output row, 1-D first. Two outputs of a 3-tap filter g over four inputs d,

    y0 = d0 g0 + d1 g1 + d2 g2,   y1 = d1 g0 + d2 g1 + d3 g2      (6 products),

can be computed with 4: transform the filter once, ``u = G g``, the input tile ``v = B^T d``,
multiply element-wise, and transform back, ``y = A^T (u * v)``, with

    B^T = [[1, 0, -1, 0],   G = [[1,    0,   0],    A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],        [1/2, 1/2, 1/2],          [0, 1, -1, -1]]
           [0,-1,  1, 0],        [1/2,-1/2, 1/2],
           [0, 1,  0,-1]]        [0,    0,   1]]

In 2-D the transforms act on both axes. For a 4x4 input tile d (channel c) and a 3x3 filter
g (channel c to filter f), the 2x2 output tile is

    Y = A^T [ sum_c (G g G^T) * (B^T d B) ] A

and the sum over channels, done for each of the 16 entries (i, j) of the 4x4 transformed
tiles, is a matrix product. With tiles stored as (16, T, C) (T = tiles in the batch):

    U[k] = (G g G^T)[k]           (16, C, F)   the kernel, transformed once per step
    V[k] = (B^T d B)[k]           (16, T, C)   input tiles at stride 2, overlapping by 2 pixels
    M[k] = V[k] @ U[k]            (16, T, F)   16 matrix products
    y    = A^T M A + b            (N, OH, OW, F)

Backward. Every step above is linear, so each gradient is the adjoint (transpose) of its step,
taken in reverse order, given ``dy``:

    dM[k] = (A dy A^T)[k]          output transform, adjoint
    dU[k] = V[k]^T @ dM[k]         -> dK = G^T dU G (per (c, f)), db = sum of dy
    dV[k] = dM[k] @ U[k]^T         -> dx = sum over the tiles covering a pixel of B dV B^T

Float32 rounding is of the same order as im2col's (the transforms only add and halve);
tests hold both algorithms to the nested-loop definition and gradchecks run on this path.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..kernels.reference import winograd_tiles

WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def kernel_transform(kernel):
    """(3, 3, C, F) -> U of shape (16, C, F): G g G^T for every channel pair."""
    g = WINOGRAD_G.astype(kernel.dtype)
    u = np.einsum("ia,jb,abcf->ijcf", g, g, kernel, optimize=True)
    return u.reshape(16, *kernel.shape[2:])


def kernel_transform_adjoint(du):
    """(16, C, F) -> (3, 3, C, F): G^T dU G, the gradient of the kernel from that of U."""
    g = WINOGRAD_G.astype(du.dtype)
    return np.einsum("ia,jb,ijcf->abcf", g, g, du.reshape(4, 4, *du.shape[1:]), optimize=True)


def forward(x, kernel, bias, padding, out_shape):
    """The convolution of ``x`` (N, H, W, C); returns ``(y, cache)`` for ``backward``."""
    tiles = winograd_tiles(out_shape[1], out_shape[2])
    v = kernels.winograd_input_transform(x, padding, tiles)
    u = kernel_transform(kernel)
    m = np.matmul(v, u)
    y = kernels.winograd_output_transform(m, out_shape, bias)
    return y, (v, u, x.shape, padding, tiles)


def backward(dy, cache, input_gradient: bool = True):
    """Returns ``(dkernel, dbias, dx)`` for the upstream gradient ``dy`` (N, OH, OW, F); dx is
    None when ``input_gradient`` is False."""
    v, u, x_shape, padding, tiles = cache
    dm = kernels.winograd_output_transform_adjoint(dy)
    dkernel = kernel_transform_adjoint(np.matmul(v.transpose(0, 2, 1), dm))
    dbias = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    if not input_gradient:
        return dkernel, dbias, None
    dv = np.matmul(dm, u.transpose(0, 2, 1))
    dx = kernels.winograd_input_transform_adjoint(dv, x_shape, padding, tiles)
    return dkernel, dbias, dx
