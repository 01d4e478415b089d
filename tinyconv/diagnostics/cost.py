"""Where a network's cost is: each layer's arithmetic and the memory of its output, for a batch.

Counted per sample, then times the batch:

- a kernel layer (Conv2D, Conv2DTranspose, Dense) multiplies and adds its whole kernel once per
  position it is applied at, 2 FLOPs per multiply-add: Conv2D at each of its OH x OW output pixels,
  Conv2DTranspose at each of its H x W input pixels (each paints a kernel-sized patch), Dense at
  each row of its input (one for a vector). Bias additions are left out (one per output element,
  small beside the products). This is the direct algorithm's count: Winograd F(4x4, 3x3) does the
  same convolution with about 4x fewer multiplications (docs/winograd.md);
- a pooling window costs one operation per element it covers (a comparison for max, an addition for
  average); GlobalAveragePooling2D one per input element;
- an element-wise layer (activations, BatchNormalization, Dropout, Rescaling, Normalization) one per
  output element, Add one per output element per extra input; layers that only move data (Flatten,
  Reshape, Concatenate, UpSampling2D, Input) none.

The activation bytes are the layer's output for the batch (in the model's float type): what a
forward pass produces and, for most layers, what the backward pass needs kept. A training step costs
about 3 times the forward FLOPs (backward computes two products per kernel layer).
"""
from __future__ import annotations

import math

from ..layers.base import InputLayer, WindowLayer
from ..layers.conv import Conv2D
from ..layers.conv_transpose import Conv2DTranspose
from ..layers.dense import Dense, Flatten
from ..layers.merge import Add, Merge
from ..layers.pooling import GlobalAveragePooling2D
from ..layers.reshape import Reshape
from ..layers.upsampling import UpSampling2D

MOVES_DATA_ONLY = (InputLayer, Flatten, Reshape, UpSampling2D)


def forward_flops(layer, input_shapes: list[tuple]) -> int:
    """FLOPs of ``layer``'s forward pass for one sample (``input_shapes``: its inputs' shapes, no batch axis)."""
    out = math.prod(layer.output_shape)
    if isinstance(layer, Conv2D):
        return 2 * math.prod(layer.output_shape[:2]) * layer.params["kernel"].size
    if isinstance(layer, Conv2DTranspose):
        return 2 * math.prod(input_shapes[0][:2]) * layer.params["kernel"].size
    if isinstance(layer, Dense):
        return 2 * math.prod(input_shapes[0][:-1]) * layer.params["kernel"].size
    if isinstance(layer, WindowLayer):  # MaxPooling2D, AveragePooling2D
        return out * math.prod(layer.window)
    if isinstance(layer, GlobalAveragePooling2D):
        return math.prod(input_shapes[0])
    if isinstance(layer, Add):
        return out * (len(input_shapes) - 1)
    if isinstance(layer, (Merge, *MOVES_DATA_ONLY)):  # Concatenate, and the layers that move data
        return 0
    return out  # element-wise


def activation_bytes(layer, batch: int, itemsize: int) -> int:
    """Bytes of ``layer``'s output for a batch of ``batch`` samples."""
    return batch * math.prod(layer.output_shape) * itemsize


def layer_costs(model, batch: int) -> list[tuple[int, int]]:
    """``(forward FLOPs, activation bytes)`` of each of ``model.graph_layers`` for a batch."""
    itemsize = 8 if model.dtype == "float64" else 4
    costs = []
    for layer, sources in zip(model.graph_layers, model.inbound):
        shapes = [tuple(model.graph_layers[j].output_shape) for j in sources]
        costs.append((batch * forward_flops(layer, shapes), activation_bytes(layer, batch, itemsize)))
    return costs


def readable(value: float, unit: str, base: int = 1000) -> str:
    """``1.53e9, "FLOPs"`` -> ``1.53 GFLOPs``; with ``base=1024``, ``KiB``-style prefixes."""
    prefixes = ["", "K", "M", "G", "T"]
    power = 0
    while abs(value) >= base and power < len(prefixes) - 1:
        value /= base
        power += 1
    infix = "i" if base == 1024 and power else ""
    return f"{value:.3g} {prefixes[power]}{infix}{unit}"
