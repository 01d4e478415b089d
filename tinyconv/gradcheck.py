r"""Numerical gradient checks: compare explicit backprop with central differences.

For a scalar objective L and any array T it depends on (an input or a parameter),

    numeric dL/dT[i] = ( L(T[i] + h) - L(T[i] - h) ) / (2 h)          (error O(h^2) + round-off / h)

and the relative error per element is ``|a - n| / max(1e-8, |a| + |n|)``. Run in float64: with
h = 1e-5 the round-off term is ~1e-11, far below the 1e-6 bound; in float32 it would be ~1e-1.

A layer or model is checked against a *random projection* of its output, ``L = sum(w * y)``
with w ~ N(0, 1), so every output element matters and errors cannot cancel (as they can when
L = sum(y)); its upstream gradient is simply ``w``. Randomness inside the objective (dropout)
is frozen: the generators are rewound before every evaluation, so each sees the same mask.

Use ``max_checks`` to test a random sample of entries of large tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import backend, random


@dataclass
class TensorCheck:
    """The worst element of one tensor's check."""

    name: str
    max_rel_error: float
    index: tuple
    analytic: float
    numeric: float
    checked: int
    kinks: int = 0


@dataclass
class GradcheckReport:
    checks: list[TensorCheck] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=0.0)

    @property
    def worst(self) -> TensorCheck:
        return max(self.checks, key=lambda c: c.max_rel_error)

    @property
    def kinks(self) -> int:
        """Entries left out because L has a kink within h of them (see ``check``)."""
        return sum(c.kinks for c in self.checks)

    def passed(self, tolerance: float = 1e-6) -> bool:
        return self.max_rel_error < tolerance

    def __str__(self) -> str:
        lines = [f"{'tensor':<28} {'entries':>8} {'kinks':>6} {'max rel error':>14}  "
                 "worst at (analytic vs numeric)"]
        for c in self.checks:
            lines.append(f"{c.name:<28} {c.checked:>8} {c.kinks:>6} {c.max_rel_error:>14.2e}  {c.index} "
                         f"({c.analytic:.6e} vs {c.numeric:.6e})")
        return "\n".join(lines)


def relative_error(analytic, numeric):
    return np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))


class _FrozenRandomness:
    """Rewinds every generator that a forward pass may draw from (global ones and layers' own)."""

    def __init__(self, layers):
        self.global_state = random.get_state()
        self.own = [(generator, generator.bit_generator.state)
                    for generator in random.layer_generators(layers).values()]

    def rewind(self):
        random.set_state(self.global_state)
        for generator, state in self.own:
            generator.bit_generator.state = state


def check(objective, analytic: dict, tensors: dict, h: float = 1e-5, max_checks: int | None = None,
          seed: int = 0, tolerance: float = 1e-6) -> GradcheckReport:
    """The generic check: ``objective()`` evaluates L from the current values of ``tensors``.

    ``analytic`` holds the explicit-backprop gradient of each tensor (same names and shapes);
    each tensor is perturbed in place, one element at a time, and restored.

    Kinks: where a ReLU input or a max-pool race lies within h of its switching point, L is not
    differentiable inside [T - h, T + h] and the central difference mixes two slopes: no reference
    at all. Such an element is recognised in two ways and counted in ``kinks`` instead of the error:
    its one-sided slopes ``(L(+h) - L(0)) / h`` and ``(L(0) - L(-h)) / h`` disagree far more than
    smoothness allows (they differ by about h * L'' elsewhere), or its error above ``tolerance``
    vanishes with a ten times smaller step (a wrong gradient does not depend on h; a kink crossed
    by one of many summed terms does). Keep inputs away from kinks so that few, if any, are found.
    """
    rng = np.random.default_rng(seed)
    report = GradcheckReport()
    base = objective()

    def differences(tensor, index, step):
        original = tensor[index]
        tensor[index] = original + step
        plus = objective()
        tensor[index] = original - step
        minus = objective()
        tensor[index] = original
        return plus, minus

    for name, tensor in tensors.items():
        if tensor.dtype != np.float64:
            raise TypeError(f"gradcheck: {name!r} is {tensor.dtype}; run gradient checks in float64 "
                            "(tinyconv.set_floatx('float64') before building the layer)")
        grad = backend.to_numpy(analytic[name]).ravel()
        flat_indices = np.arange(tensor.size)
        if max_checks is not None and tensor.size > max_checks:
            flat_indices = rng.choice(tensor.size, size=max_checks, replace=False)
        numeric = np.zeros(len(flat_indices))
        kink = np.zeros(len(flat_indices), dtype=bool)
        for k, flat in enumerate(flat_indices):
            index = np.unravel_index(flat, tensor.shape)
            plus, minus = differences(tensor, index, h)
            numeric[k] = (plus - minus) / (2 * h)
            right, left = (plus - base) / h, (base - minus) / h
            kink[k] = abs(right - left) > 1e-2 * max(abs(right) + abs(left), 1e-8)
            if not kink[k] and relative_error(grad[flat], numeric[k]) >= tolerance:
                plus, minus = differences(tensor, index, h / 10)
                kink[k] = relative_error(grad[flat], (plus - minus) / (h / 5)) < tolerance
        errors = np.where(kink, 0.0, relative_error(grad[flat_indices], numeric))
        worst = int(np.argmax(errors))
        index = tuple(int(i) for i in np.unravel_index(flat_indices[worst], tensor.shape))
        report.checks.append(TensorCheck(name, float(errors[worst]), index, float(grad[flat_indices[worst]]),
                                         float(numeric[worst]), len(flat_indices), int(kink.sum())))
    return report


def check_layer(layer, x, training: bool = False, h: float = 1e-5, max_checks: int | None = None,
                seed: int = 0) -> GradcheckReport:
    """Check dL/dx and every parameter gradient of one layer on the float64 batch ``x``."""
    return check_model(_SingleLayer(layer), x, training=training, h=h, max_checks=max_checks, seed=seed)


def check_model(model, x, training: bool = False, h: float = 1e-5, max_checks: int | None = None,
                seed: int = 0) -> GradcheckReport:
    """Check dL/dx and every parameter gradient of a whole model (``forward``/``backward``/``layers``)."""
    x = backend.to_device(np.array(backend.to_numpy(x), dtype=np.float64))
    xp = backend.get_array_module(x)
    randomness = _FrozenRandomness(model.layers)
    y = model.forward(x, training)
    projection = xp.asarray(np.random.default_rng(seed + 1).standard_normal(y.shape))
    upstream = projection.copy()
    dx = model.backward(upstream)
    if not bool((upstream == projection).all()):
        raise ValueError("gradcheck: backward modified the upstream gradient it was given (in place); "
                         "a layer must return a new array and leave dy unchanged")
    analytic = {"input": dx}
    tensors = {"input": x}
    for layer in model.layers:
        for key, value in layer.params.items():
            analytic[f"{layer.name}/{key}"] = layer.grads[key].copy()
            tensors[f"{layer.name}/{key}"] = value

    def objective():
        randomness.rewind()
        # fsum adds exactly, so outputs untouched by the perturbation cancel in L(+h) - L(-h).
        return math.fsum(backend.to_numpy(model.forward(x, training) * projection).ravel())

    randomness.rewind()
    return check(objective, analytic, tensors, h=h, max_checks=max_checks, seed=seed)


def check_loss(loss, y_pred, y_true, h: float = 1e-5, seed: int = 0) -> GradcheckReport:
    """Check dL/d(y_pred) of a loss (the loss is already a scalar: no projection needed)."""
    y_pred = np.array(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    loss.forward(y_pred, y_true)
    analytic = {"y_pred": loss.backward()}
    return check(lambda: loss.forward(y_pred, y_true), analytic, {"y_pred": y_pred}, h=h, seed=seed)


class _SingleLayer:
    """Lets ``check_model`` drive one layer."""

    def __init__(self, layer):
        self.layers = [layer]

    def forward(self, x, training=False):
        return self.layers[0].forward(x, training)

    def backward(self, dy):
        return self.layers[0].backward(dy)
