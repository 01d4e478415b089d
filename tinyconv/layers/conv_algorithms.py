"""How a Conv2D layer computes its formulas: which algorithm runs.

Conv2D's own algorithm is im2col and one matrix product, written in ``conv.py`` as the math of
docs/conv2d.md. Two other algorithms compute the same function, and ``choose`` picks one of them
when it applies (``choose`` returns the name of the algorithm, ``OTHERS`` holds the two):

- ``Winograd``: F(m x m, 3x3) of ``winograd.py``, 4x fewer multiplications, for 3x3 stride-1
  layers on the CPU. ``algorithm="auto"`` (the default) takes it for layers with at least
  ``WINOGRAD_MIN_CHANNELS`` input channels, with the tile of ``winograd.fewest_products`` for the
  layer's output size (F(6x6) at 24 or 48 px, F(4x4) at 16 or 32); ``"winograd"`` (F(4x4, 3x3)),
  ``"winograd_6x6"`` (F(6x6, 3x3): 5x fewer, about 1.4x F(4x4)'s float32 rounding) and
  ``"winograd_2x2"`` (F(2x2, 3x3): 2.25x fewer, float32 rounding as small as im2col's) ask for one
  wherever the kernel shape allows; ``"im2col"`` never. On the GPU, Conv2D always uses im2col.
- ``Loops``: the definition as Python loops (``kernels/loops.py``), for every layer while the loop
  kernels are switched on (``tinyconv.kernels.use_loop_kernels()``), whatever ``algorithm`` says.

Each has ``forward(layer, x) -> (z, cache)`` and ``backward(layer, dz, cache, input_gradient)
-> (dkernel, dbias, dx)``.
"""
from __future__ import annotations

from .. import kernels
from ..kernels import loops
from . import winograd

# The Winograd tile of each algorithm name; "auto" takes the one of them with the fewest products
# where Winograd applies, else im2col.
WINOGRAD_TILES = {"winograd": winograd.F4X4_3X3, "winograd_6x6": winograd.F6X6_3X3, "winograd_2x2": winograd.F2X2_3X3}
ALGORITHMS = ("auto", "im2col", *WINOGRAD_TILES)
# With few input channels the 36 Winograd products are thin (inner dimension C) and bound by
# memory, while im2col's single product has 9*C. Measured at batch 32 on 32x32 inputs, forward +
# backward: C=16 im2col 19 ms vs Winograd 24 ms; C=32 26 vs 21 ms; C=64 70 vs 41 ms.
WINOGRAD_MIN_CHANNELS = 32


def winograd_shape(kernel_size, strides) -> bool:
    """Whether Winograd F(m x m, 3x3) can compute a layer: a 3x3 kernel with strides 1."""
    return tuple(kernel_size) == (3, 3) and tuple(strides) == (1, 1)


def _bias(layer, x):
    return layer.params["bias"] if layer.use_bias else x.dtype.type(0)


class Winograd:
    def __init__(self, transforms: winograd.TileTransforms):
        self.transforms = transforms

    def forward(self, layer, x):
        return winograd.forward(x, layer.params["kernel"], _bias(layer, x), layer.pads,
                                (x.shape[0], *layer.output_shape), self.transforms)

    def backward(self, layer, dz, cache, input_gradient):
        return winograd.backward(dz, cache, input_gradient)


class Loops:
    def forward(self, layer, x):
        z = loops.conv2d_forward(x, layer.params["kernel"], _bias(layer, x), layer.geometry)
        return z, x

    def backward(self, layer, dz, x, input_gradient):
        dkernel, dbias, dx = loops.conv2d_backward(dz, x, layer.params["kernel"], layer.geometry)
        return dkernel, dbias, dx if input_gradient else None


OTHERS = {"loops": Loops(), **{name: Winograd(transforms) for name, transforms in WINOGRAD_TILES.items()}}


def choose(layer, x) -> str:
    """The algorithm that computes ``layer`` on ``x``: "im2col" or a key of ``OTHERS``."""
    if kernels.runs_loops(x):
        return "loops"
    if layer.algorithm == "im2col" or not winograd_shape(layer.kernel_size, layer.strides) \
            or not kernels.has_winograd(x):
        return "im2col"
    if layer.algorithm == "auto":
        if layer.input_shape[2] < WINOGRAD_MIN_CHANNELS:
            return "im2col"
        tile = winograd.fewest_products(*layer.output_shape[:2])
        return next(name for name, transforms in WINOGRAD_TILES.items() if transforms is tile)
    return layer.algorithm
