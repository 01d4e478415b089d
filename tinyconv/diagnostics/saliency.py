r"""Saliency maps: which pixels a label's output is most sensitive to.

For an image $x$ and label $l$, the map is the gradient $\partial z_l / \partial x$ of the label's
score $z_l$ (its output before the final sigmoid) with respect to every input pixel, reduced over
channels by the largest absolute value (Simonyan et al., 2014). Explicit backprop gives it directly:
one forward pass, then one backward pass that starts from a one-hot upstream gradient on label $l$.

The score rather than the probability $p_l = \sigma(z_l)$ is differentiated because
$\partial p_l / \partial x = p_l (1 - p_l)\, \partial z_l / \partial x$: for a confident prediction
the factor $p_l (1 - p_l)$ is nearly 0 and would hide the map, while the pattern is the same.
"""
from __future__ import annotations

import numpy as np

from .. import backend


def saliency_map(model, images: np.ndarray, label: int) -> np.ndarray:
    """(N, H, W, C) images -> (N, H, W) maps of ``max over channels |d z_label / d x|``.

    ``model`` must end in a sigmoid (``Dense(..., activation="sigmoid")`` or ``Activation``), as the
    models of ``compile(loss="binary_crossentropy")`` do; its parameter gradients are overwritten.
    """
    images = backend.to_numpy(images)  # a NumPy or CuPy array, or a nested list
    if images.ndim != 4:
        raise ValueError(f"saliency_map: expected images (N, H, W, C), got shape {images.shape}")
    n_labels = model.output_shape[-1]
    if not 0 <= label < n_labels:
        raise ValueError(f"saliency_map: label must be in [0, {n_labels}), got {label}")
    if not model._ends_in("sigmoid"):
        raise ValueError(f"saliency_map: model {model.name!r} must end in a sigmoid")
    z = model.forward_logits(images, training=False)
    upstream = np.zeros(tuple(z.shape), dtype=z.dtype)
    upstream[:, label] = 1
    grad = backend.to_numpy(model.backward_logits(model.to_model_device(upstream)))
    return np.abs(grad).max(axis=-1)
