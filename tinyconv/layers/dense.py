r"""Dense (fully connected) and Flatten.

Dense, with ``x`` (N, D), kernel ``W`` (D, U), bias ``b`` (U,):

    forward:   z = x @ W + b                (N, U)
    backward:  dW = x^T @ dz   (D, U)
               db = sum over the batch of dz (U,)
               dx = dz @ W^T   (N, D)

Flatten: (N, H, W, C) -> (N, H*W*C) in row-major order (channels fastest, as Keras does for
channels-last data); backward reshapes the gradient back. No arithmetic, no copy.
"""
from __future__ import annotations

import numpy as np

from .. import arguments, initializers, kernels
from .base import Layer, constructor_owner
from .linear import LinearLayer


class Dense(LinearLayer):
    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None,
                 name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        self.units = arguments.integer(units, "units", owner, low=1)
        self.use_bias = arguments.boolean(use_bias, "use_bias", owner)
        initializers.get(kernel_initializer, owner=f"{owner}: kernel_initializer")
        initializers.get(bias_initializer, owner=f"{owner}: bias_initializer")
        super().__init__(activation=activation, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, name=name, input_shape=input_shape)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"layer {self.name!r} (Dense): expected input of shape (batch, features), got "
                f"(batch, {', '.join(map(str, input_shape))}); put a Flatten() before it")
        return (self.units,)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_param("kernel", (input_shape[0], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (self.units,), self.bias_initializer)

    def forward_linear(self, x):
        self.check_input(x)
        self.cache = x
        return kernels.matmul(x, self.params["kernel"], self.params["bias"] if self.use_bias else None)

    def backward_linear(self, dz, input_gradient: bool = True):
        x = self.cache
        self.grads["kernel"] = kernels.matmul(x.T, dz)
        if self.use_bias:
            self.grads["bias"] = kernels.column_sums(dz)
        return kernels.matmul(dz, self.params["kernel"].T) if input_gradient else None

    def receptive_field(self, field):
        return None  # every output sees the whole input


class Flatten(Layer):
    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(dy.shape[0], *self.input_shape)
