r"""Activations: LeakyReLU, ReLU, sigmoid, tanh, softmax, and the ``Activation(name)`` layer.

All keep the shape: ``x`` (N, ...) -> ``y`` (N, ...), and backward multiplies by the derivative:
``dx = dy * f'(x)``.

- LeakyReLU: ``y = x`` for x > 0, ``alpha * x`` otherwise; ``f'(x) = 1`` or ``alpha``. Keras's
  default slope is 0.3 (not the 0.01 many texts use).
- ReLU: LeakyReLU with slope 0.
- Sigmoid: ``y = 1 / (1 + exp(-x))``; ``f'(x) = y * (1 - y)``, computed from the cached output.
  Evaluated as ``exp(min(x, 0)) / (1 + exp(-|x|))`` so no exp overflows for large |x|.
- Tanh: ``y = tanh(x) = 2 sigmoid(2x) - 1``, in (-1, 1); ``f'(x) = 1 - y**2``, from the cached output.
- Softmax (along ``axis``, default -1): ``y_k = exp(x_k - m) / sum_j exp(x_j - m)`` with m the
  maximum along the axis (the same value, and no exp overflows). Not element-wise: each output
  depends on the whole row, ``dy_k/dx_j = y_k (delta_kj - y_j)``, so
  ``dx = y * (dy - sum_k dy_k y_k)`` (the sum along the axis).

At x = 0 the (Leaky)ReLU derivative is taken as ``alpha`` (the left one).
"""
from __future__ import annotations

from .. import arguments, kernels
from ..backend import get_array_module
from .base import Layer, constructor_owner, feature_axis_argument


class LeakyReLU(Layer):
    def __init__(self, alpha: float | None = None, negative_slope: float | None = None,
                 name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        # backward reads the sign of x from y, which holds only for a slope >= 0
        slopes = [arguments.number(slope, key, owner, low=0) for key, slope in
                  (("alpha", alpha), ("negative_slope", negative_slope)) if slope is not None]
        if len(slopes) == 2 and slopes[0] != slopes[1]:
            raise ValueError(f"{owner}: give alpha or negative_slope, not both (got {alpha} and {negative_slope})")
        self.alpha = slopes[0] if slopes else 0.3
        super().__init__(name=name, input_shape=input_shape)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        y = kernels.leaky_relu_forward(x, self.alpha)
        self.cache = y
        return y

    def backward(self, dy):
        # y > 0 exactly where x > 0 (alpha >= 0), so the output is all backward needs.
        y = self.cache
        return kernels.leaky_relu_backward(dy, y, self.alpha)


class ReLU(LeakyReLU):
    def __init__(self, name: str | None = None, input_shape=None):
        super().__init__(alpha=0.0, name=name, input_shape=input_shape)


class Sigmoid(Layer):
    ends_in_sigmoid = True  # a model ending here fuses it with the loss (see ``Layer.ends_in_sigmoid``)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        xp = get_array_module(x)
        # exp of a non-positive number never overflows; both branches equal 1 / (1 + exp(-x)).
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.cache = y
        return y

    def backward(self, dy):
        y = self.cache
        return dy * y * (1 - y)

    def forward_logits(self, x, training: bool = False):
        self.check_input(x)
        return x

    def backward_logits(self, dz):
        return dz


class Tanh(Layer):
    def forward(self, x, training: bool = False):
        self.check_input(x)
        y = get_array_module(x).tanh(x)
        self.cache = y
        return y

    def backward(self, dy):
        y = self.cache
        return dy * (1 - y * y)


class Softmax(Layer):
    def __init__(self, axis: int = -1, name: str | None = None, input_shape=None):
        self.axis = feature_axis_argument(axis, constructor_owner(self, name))
        super().__init__(name=name, input_shape=input_shape)

    def compute_output_shape(self, input_shape):
        if not -len(input_shape) - 1 < self.axis <= len(input_shape):
            raise ValueError(f"layer {self.name!r} (Softmax): axis {self.axis} is out of range for inputs "
                             f"of shape (batch, {', '.join(map(str, input_shape))})")
        return input_shape

    @property
    def ends_in_softmax(self) -> bool:
        """Over the last axis (the default, or a positive axis naming it): fused with categorical
        cross-entropy, which takes (batch, classes) rows."""
        return self.axis == -1 or (self.input_shape is not None and self.axis == len(self.input_shape))

    def forward_logits(self, x, training: bool = False):
        self.check_input(x)
        return x

    def backward_logits(self, dz):
        return dz

    def forward(self, x, training: bool = False):
        self.check_input(x)
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        y = e / e.sum(axis=self.axis, keepdims=True)
        self.cache = y
        return y

    def backward(self, dy):
        y = self.cache
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))


# Identifiers accepted by ``activation=`` and ``Activation(...)``; None and "linear" mean no activation.
_ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "softmax": Softmax, "tanh": Tanh}


def get(identifier, owner: str = "activation"):
    """An activation layer for a name (``"relu"``, ``"sigmoid"``, ...), a Layer, or None for linear."""
    if isinstance(identifier, Layer):
        return identifier
    if identifier is None:
        return None
    if not isinstance(identifier, str):
        raise TypeError(f"{owner}: activation must be a name such as 'relu', a layer or None, "
                        f"got {arguments.describe(identifier)}")
    if identifier == "linear":
        return None
    if identifier not in _ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {identifier!r}; expected one of "
                         f"{sorted(_ACTIVATIONS) + ['linear', None]}")
    return _ACTIVATIONS[identifier](name=identifier)


class Activation(Layer):
    """``Activation("sigmoid")``: an activation as a layer of its own."""

    def __init__(self, activation, name: str | None = None, input_shape=None):
        self.function = get(activation, owner=constructor_owner(self, name))
        super().__init__(name=name, input_shape=input_shape)
        self.activation_name = activation if isinstance(activation, str) else type(activation).__name__

    def forward(self, x, training: bool = False):
        self.check_input(x)
        return x if self.function is None else self.function.forward(x, training)

    def backward(self, dy):
        return dy if self.function is None else self.function.backward(dy)

    def release_cache(self) -> None:
        super().release_cache()
        if self.function is not None:
            self.function.release_cache()

    @property
    def ends_in_sigmoid(self) -> bool:
        return self.function is not None and self.function.ends_in_sigmoid

    @property
    def ends_in_softmax(self) -> bool:
        return self.function is not None and self.function.ends_in_softmax

    def forward_logits(self, x, training: bool = False):
        self.check_input(x)
        return self.function.forward_logits(x, training)

    def backward_logits(self, dz):
        return self.function.backward_logits(dz)
