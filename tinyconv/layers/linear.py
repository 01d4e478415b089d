"""LinearLayer: the base of layers computing ``z = linear(x)`` then ``y = activation(z)``.

Its own file because it needs the activations, which are layers built on ``base.py``: keeping it
out of ``base.py`` keeps the imports one-way (base <- activations <- linear <- conv, dense).
"""
from __future__ import annotations

import inspect

from .. import regularizers
from . import activations
from .base import Layer, constructor_owner


class LinearLayer(Layer):
    """A layer computing ``z = linear(x)`` then ``y = activation(z)`` (Conv2D, Dense).

    Subclasses implement ``forward_linear`` and ``backward_linear``. Keeping the two steps apart
    lets a model skip a final sigmoid or softmax when it is fused with the loss (gradient
    ``(p - y) / (N*L)`` or ``(p - y) / N``).
    """

    def __init__(self, activation=None, kernel_regularizer=None, bias_regularizer=None, **kwargs):
        owner = constructor_owner(self, kwargs.get("name"))
        self.activation = activations.get(activation, owner=owner)
        chosen = {"kernel": regularizers.get(kernel_regularizer, f"{owner}: kernel_regularizer"),
                  "bias": regularizers.get(bias_regularizer, f"{owner}: bias_regularizer")}
        super().__init__(**kwargs)
        self.regularizers = {key: regularizer for key, regularizer in chosen.items() if regularizer is not None}

    def forward(self, x, training: bool = False):
        z = self.forward_linear(x)
        return z if self.activation is None else self.activation.forward(z, training)

    def release_cache(self) -> None:
        super().release_cache()
        if self.activation is not None:
            self.activation.release_cache()

    @property
    def ends_in_sigmoid(self) -> bool:
        return self.activation is not None and self.activation.ends_in_sigmoid

    @property
    def ends_in_softmax(self) -> bool:
        return self.activation is not None and self.activation.ends_in_softmax

    def forward_logits(self, x, training: bool = False):
        return self.activation.forward_logits(self.forward_linear(x), training)

    def backward_logits(self, dz):
        return self.backward_linear(self.activation.backward_logits(dz))

    skips_input_gradient = False  # whether backward_linear takes input_gradient (set per class, below)

    def __init_subclass__(cls, **kwargs):
        """Decided once per class, not per call: a ``backward_linear(dz, input_gradient)`` may skip
        dL/dx; a ``backward_linear(dz)`` alone (as the exercises write it) still works, its dx is
        computed and dropped."""
        super().__init_subclass__(**kwargs)
        if "backward_linear" in cls.__dict__:
            cls.skips_input_gradient = "input_gradient" in inspect.signature(cls.backward_linear).parameters

    def backward(self, dy, input_gradient: bool = True):
        """``input_gradient=False`` fills ``grads`` and returns None (for a model's first layer)."""
        dz = dy if self.activation is None else self.activation.backward(dy)
        if input_gradient:
            return self.backward_linear(dz)
        if self.skips_input_gradient:
            return self.backward_linear(dz, input_gradient=False)
        self.backward_linear(dz)
        return None
