r"""BatchNormalization: normalise each channel over the batch, then scale and shift it.

Shapes are kept: ``x`` (N, ..., C) -> ``y`` (N, ..., C), with C the size of ``axis`` (default -1,
the channels of NHWC images or the units of a Dense layer). Every other axis is reduced: the
statistics of a channel come from all M = N*H*W values it takes in the batch. Weights (C,):
``gamma`` (ones) and ``beta`` (zeros), trainable; ``moving_mean`` (zeros) and ``moving_variance``
(ones), not trainable. ``get_weights()`` gives them in Keras's order
``[gamma, beta, moving_mean, moving_variance]`` (without gamma when ``scale=False``, without beta
when ``center=False``).

Forward, training (the batch's own statistics, variance biased: divided by M):

    mu = mean(x),  var = mean((x - mu)^2)
    x_hat = (x - mu) / sqrt(var + eps),   y = gamma * x_hat + beta
    moving_mean = moving_mean * momentum + mu * (1 - momentum)       (Keras's update; likewise
    moving_variance = moving_variance * momentum + var * (1 - momentum)    with the biased var)

Forward, inference: the same with the moving statistics in place of mu and var.

Backward (sums over the M values of a channel; ``docs/batchnorm.md`` derives it):

    dbeta = sum(dy),   dgamma = sum(dy * x_hat)
    training:   dx = gamma / sqrt(var + eps) * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    inference:  dx = gamma / sqrt(var + eps) * dy

The two extra terms of the training case are the gradient flowing through mu and var, which
depend on every x of the batch: forgetting them is the classic mistake. The sums run in
``tinyconv.kernels`` (numba over the (M, C) rows on the CPU, array operations on the GPU).
"""
from __future__ import annotations

from .. import arguments, initializers, kernels
from ..backend import get_array_module
from .base import Layer, constructor_owner, feature_axis_argument


class BatchNormalization(Layer):
    moving_statistics = ("moving_mean", "moving_variance")

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 name: str | None = None, input_shape=None):
        owner = constructor_owner(self, name)
        self.axis = feature_axis_argument(axis, owner)
        self.momentum = arguments.number(momentum, "momentum", owner, low=0, high=1)
        # epsilon > 0 keeps 1 / sqrt(var + eps) finite for a constant channel
        self.epsilon = arguments.number(epsilon, "epsilon", owner, low=0, low_open=True)
        self.center = arguments.boolean(center, "center", owner)
        self.scale = arguments.boolean(scale, "scale", owner)
        self.initializers = {"gamma": gamma_initializer, "beta": beta_initializer,
                             "moving_mean": moving_mean_initializer,
                             "moving_variance": moving_variance_initializer}
        for weight, initializer in self.initializers.items():
            initializers.get(initializer, owner=f"{owner}: {weight}_initializer")
        super().__init__(name=name, input_shape=input_shape)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1  # with the batch axis, which ``axis`` counts (as in Keras)
        if not -rank < self.axis < rank:
            raise ValueError(f"layer {self.name!r} (BatchNormalization): axis {self.axis} is out of range for "
                             f"inputs of shape (batch, {', '.join(map(str, input_shape))})")
        self.feature_axis = self.axis % rank  # 1 .. rank - 1
        return input_shape

    def build(self, input_shape):
        super().build(input_shape)
        channels = (input_shape[self.feature_axis - 1],)
        if self.scale:
            self.add_param("gamma", channels, self.initializers["gamma"])
        if self.center:
            self.add_param("beta", channels, self.initializers["beta"])
        self.add_param("moving_mean", channels, self.initializers["moving_mean"], trainable=False)
        self.add_param("moving_variance", channels, self.initializers["moving_variance"], trainable=False)

    # --- the (M, C) view the kernels work on ---------------------------------------------------
    def _rows(self, a):
        """(N, ..., C, ...) -> (M, C): a free reshape when the feature axis is the last one."""
        xp = get_array_module(a)
        if self.feature_axis != a.ndim - 1:
            a = xp.moveaxis(a, self.feature_axis, -1)
        return xp.ascontiguousarray(a).reshape(-1, a.shape[-1])

    def _unrows(self, rows, shape):
        xp = get_array_module(rows)
        if self.feature_axis == len(shape) - 1:
            return rows.reshape(shape)
        moved = (*shape[:self.feature_axis], *shape[self.feature_axis + 1:], shape[self.feature_axis])
        return xp.ascontiguousarray(xp.moveaxis(rows.reshape(moved), -1, self.feature_axis))

    def _gamma_beta(self, xp, channels: int, dtype):
        gamma = self.params["gamma"] if self.scale else xp.ones(channels, dtype=dtype)
        beta = self.params["beta"] if self.center else xp.zeros(channels, dtype=dtype)
        return gamma, beta

    # --- forward and backward ------------------------------------------------------------------
    def forward(self, x, training: bool = False):
        self.check_input(x)
        xp = get_array_module(x)
        rows = self._rows(x)
        if training:
            mean, variance = kernels.batchnorm_statistics(rows)
            for moving, batch in ((self.non_trainable_params["moving_mean"], mean),
                                  (self.non_trainable_params["moving_variance"], variance)):
                moving *= self.momentum
                moving += (1 - self.momentum) * batch.astype(moving.dtype, copy=False)
        else:
            mean = self.non_trainable_params["moving_mean"]
            variance = self.non_trainable_params["moving_variance"]
        inv_std = 1 / xp.sqrt(variance.astype(x.dtype, copy=False) + x.dtype.type(self.epsilon))
        gamma, beta = self._gamma_beta(xp, rows.shape[1], x.dtype)
        y, x_hat = kernels.batchnorm_forward(rows, mean, inv_std, gamma, beta)
        self.cache = x_hat, gamma * inv_std, training, x.shape
        return self._unrows(y, x.shape)

    def backward(self, dy):
        x_hat, scale, batch_statistics, shape = self.cache
        dx, dgamma, dbeta = kernels.batchnorm_backward(self._rows(dy), x_hat, scale, batch_statistics)
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return self._unrows(dx, shape)
