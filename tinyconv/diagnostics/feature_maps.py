"""Feature maps: what a trained model's intermediate layers compute for one image.

Every layer with an image-shaped output (OH, OW, C) produces C maps, one per channel: where in the
image its filter responded. Early maps look like the input filtered (edges, blobs); deeper ones are
coarser and respond to larger patterns. ``plots.plot_feature_maps`` draws them.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..layers.base import InputLayer
from ..layers.linear import LinearLayer


def default_layers(model) -> list:
    """The layers whose outputs a reader looks at: image-shaped outputs after a nonlinearity or a
    pooling (a Conv2D without activation is skipped: the activation layer after it shows the same
    map, rectified)."""
    return [layer for layer in model.layers
            if len(layer.output_shape) == 3 and not isinstance(layer, InputLayer)
            and not (isinstance(layer, LinearLayer) and layer.activation is None)]


def feature_maps(model, image: np.ndarray, layers=None) -> dict[str, np.ndarray]:
    """The outputs of ``layers`` (default: ``default_layers``) for one (H, W, C) image, as a dict
    layer name -> (OH, OW, C) host array, in the model's layer order.

    The outputs are recorded during one ordinary ``model.forward`` (inference mode), so they are
    exactly what the model computes, whatever the graph.
    """
    image = np.asarray(image)
    if tuple(image.shape) != tuple(model.input_shape[1:]):
        raise ValueError(f"feature_maps: expected one image of shape {tuple(model.input_shape[1:])} "
                         f"for model {model.name!r}, got {image.shape}")
    layers = default_layers(model) if layers is None else list(layers)
    for layer in layers:
        if layer not in model.layers or len(layer.output_shape) != 3:
            raise ValueError(f"feature_maps: layer {layer.name!r} is not an image-shaped layer of model "
                             f"{model.name!r}")
    recorded = {}

    def recording(layer):
        forward = layer.forward

        def forward_and_record(x, training=False):
            y = forward(x, training)
            recorded[layer.name] = backend.to_numpy(y)[0]
            return y
        return forward_and_record

    for layer in layers:
        layer.forward = recording(layer)  # an instance attribute shadows the class's method
    try:
        model.forward(image[None], training=False, keep_caches=False)
    finally:
        for layer in layers:
            del layer.forward
    return {layer.name: recorded[layer.name] for layer in layers}
