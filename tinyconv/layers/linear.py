"""LinearLayer: the base of layers computing ``z = linear(x)`` then ``y = activation(z)``.

Its own file because it needs the activations, which are layers built on ``base.py``: keeping it
out of ``base.py`` keeps the imports one-way (base <- activations <- linear <- conv, dense).
"""
from __future__ import annotations

import inspect

from . import activations
from .base import Layer, constructor_owner


class LinearLayer(Layer):
    """A layer computing ``z = linear(x)`` then ``y = activation(z)`` (Conv2D, Dense).

    Subclasses implement ``forward_linear`` and ``backward_linear``. Keeping the two steps apart
    lets a model skip a final sigmoid or softmax when it is fused with the loss (gradient
    ``(p - y) / (N*L)`` or ``(p - y) / N``).
    """

    def __init__(self, activation=None, **kwargs):
        self.activation = activations.get(activation, owner=constructor_owner(self, kwargs.get("name")))
        super().__init__(**kwargs)

    def forward(self, x, training: bool = False):
        z = self.forward_linear(x)
        return z if self.activation is None else self.activation.forward(z, training)

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

    def backward(self, dy, input_gradient: bool = True):
        """``input_gradient=False`` fills ``grads`` and returns None (for a model's first layer).

        ``backward_linear(dz, input_gradient)`` may then skip dL/dx; a subclass that defines
        ``backward_linear(dz)`` alone still works, its dx is computed and dropped.
        """
        dz = dy if self.activation is None else self.activation.backward(dy)
        if input_gradient:
            return self.backward_linear(dz)
        if "input_gradient" in inspect.signature(self.backward_linear).parameters:
            return self.backward_linear(dz, input_gradient=False)
        self.backward_linear(dz)
        return None
