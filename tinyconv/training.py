"""Training: ``compile`` and the training step (fit, evaluate and predict build on it).

One training step on a batch ``(x, y)``:

1. forward with ``training=True`` (dropout active),
2. the loss and its gradient with respect to the model output,
3. backward through every layer (explicit backprop fills each layer's ``grads``),
4. the optimizer updates every parameter in place.

When the model ends in a sigmoid and the loss is ``BinaryCrossentropy(from_logits=False)``, steps
2-3 are fused: the sigmoid is skipped and the loss is taken in its logits form on the sigmoid's
input ``z``, whose gradient is ``(sigmoid(z) - y) / (N * L)`` (see ``losses.py``).
"""
from __future__ import annotations

import math

from . import backend, losses, optimizers
from .layers.activations import Activation, Sigmoid
from .layers.base import LinearLayer


class Trainable:
    """Mixed into ``Model``: everything that needs a loss and an optimizer."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self.fuse_sigmoid = False

    def compile(self, optimizer="adam", loss="binary_crossentropy", metrics=None) -> None:
        """Choose the optimizer and the loss; ``metrics=["accuracy"]`` is binary accuracy with BCE."""
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self.metrics = list(metrics or [])
        unknown = [m for m in self.metrics if m not in ("accuracy", "binary_accuracy")]
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown metrics {unknown}; expected 'accuracy'")
        self.fuse_sigmoid = not self.loss.from_logits and self._ends_in_sigmoid()
        if self.fuse_sigmoid:
            self.logits_loss = losses.BinaryCrossentropy(from_logits=True)

    def _ends_in_sigmoid(self) -> bool:
        last = self.layers[-1]
        if isinstance(last, Activation):
            return isinstance(last.function, Sigmoid)
        return isinstance(last, LinearLayer) and isinstance(last.activation, Sigmoid)

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None:
            raise RuntimeError(f"model {self.name!r}: call compile(optimizer, loss) before {what}")

    # --- the step ------------------------------------------------------------------------------
    def forward_logits(self, x, training: bool = False):
        """Forward pass that stops before the final sigmoid: returns its input z."""
        x = self.prepare_input(x)
        *body, last = self.layers
        for layer in body:
            x = layer.forward(x, training)
        return x if isinstance(last, Activation) else last.forward_linear(x)

    def backward_logits(self, dz):
        """Backward pass from dL/dz, the gradient at the final sigmoid's input."""
        *body, last = self.layers
        if isinstance(last, LinearLayer):
            dz = last.backward_linear(dz)
        for layer in reversed(body):
            dz = layer.backward(dz)
        return dz

    def train_step(self, x, y):
        """One optimisation step on a batch; returns ``(loss, predictions)`` (predictions on the device).

        A non-finite output gives a NaN loss and no update, so that callbacks can stop cleanly.
        """
        self._require_compiled("training")
        y = backend.to_device(y, dtype=self.dtype)
        if self.fuse_sigmoid:
            z = self.forward_logits(x, training=True)
            if not _all_finite(z):
                return math.nan, z
            loss = self.logits_loss.forward(z, y)
            predictions = self.logits_loss.cache[0]  # sigmoid(z), computed by the loss
            self.backward_logits(self.logits_loss.backward())
        else:
            predictions = self.forward(x, training=True)
            if not _all_finite(predictions):
                return math.nan, predictions
            loss = self.loss.forward(predictions, y)
            self.backward(self.loss.backward())
        self.optimizer.step(self.trainable_params(), self.gradients())
        return loss, predictions


def _all_finite(x) -> bool:
    return bool(backend.get_array_module(x).isfinite(x).all())
