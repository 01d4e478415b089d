r"""Numerical gradient checks: compare explicit backprop with central differences.

For a scalar objective L and any array T it depends on (an input or a parameter),

    numeric dL/dT[i] = ( L(T[i] + h) - L(T[i] - h) ) / (2 h)          (error O(h^2) + round-off / h)

and the relative error per element is ``|a - n| / max(1e-8, |a| + |n|)``. Run in float64: with
h = 1e-5 the round-off term is ~1e-11, far below the 1e-6 bound; in float32 it would be ~1e-1.

A layer or model is checked against a *random projection* of its output, ``L = sum(w * y)``
with w ~ N(0, 1), so every output element matters and errors cannot cancel (as they can when
L = sum(y)); its upstream gradient is simply ``w``. Randomness inside the objective (dropout)
is frozen: the generators are rewound before every evaluation, so each sees the same mask.

Use ``max_checks`` to test a random sample of entries of large tensors. Entries where L has a kink
(a ReLU input at 0, a max-pool tie) have no numerical derivative: ``check`` recognises them, counts
them, and refuses to call a check passed when they are most of what it checked.

The check runs on the device of the model's (or layer's) parameters, whatever the current device is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import backend, random


@dataclass
class TensorCheck:
    """The worst element of one tensor's check, and how its entries were judged."""

    name: str
    max_rel_error: float
    index: tuple
    analytic: float
    numeric: float
    checked: int
    kinks: int = 0    # entries with a kink within h/10: no numeric reference, left out
    refined: int = 0  # entries judged with the step h/10 (the step-h difference disagreed)


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
        """Entries left out because L has a kink within h/10 of them (see ``check``)."""
        return sum(c.kinks for c in self.checks)

    def passed(self, tolerance: float = 1e-6) -> bool:
        return self.max_rel_error < tolerance

    def __str__(self) -> str:
        lines = [f"{'tensor':<28} {'entries':>8} {'kinks':>6} {'h/10':>5} {'max rel error':>14}  "
                 "worst at (analytic vs numeric)"]
        for c in self.checks:
            lines.append(f"{c.name:<28} {c.checked:>8} {c.kinks:>6} {c.refined:>5} {c.max_rel_error:>14.2e}  "
                         f"{c.index} ({c.analytic:.6e} vs {c.numeric:.6e})")
        return "\n".join(lines)


def relative_error(analytic, numeric):
    """``|a - n| / max(1e-8, |a| + |n|)``, element-wise."""
    return np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))


def one_sided_slopes(plus: float, base: float, minus: float, step: float) -> tuple[float, float]:
    """``(L(+step) - L(0)) / step`` and ``(L(0) - L(-step)) / step``: the right and the left slope."""
    return (plus - base) / step, (base - minus) / step


def is_kink(coarse: tuple[float, float], fine: tuple[float, float]) -> bool:
    """True when the one-sided slopes at steps h (``coarse``) and h/10 (``fine``) show a kink.

    A smooth L has right - left = step * L'' + O(step^3): the gap shrinks tenfold with the step. At a
    kink it is the jump of the slope, whatever the step. So a kink is a gap that does not shrink (and
    does not grow either, as round-off does) and is not negligible next to the slopes themselves.
    """
    gap_coarse, gap_fine = abs(coarse[0] - coarse[1]), abs(fine[0] - fine[1])
    return (0.5 * gap_coarse <= gap_fine <= 2 * gap_coarse
            and gap_fine > 1e-3 * (abs(fine[0]) + abs(fine[1])))


def _between(value: float, slopes: tuple[float, float]) -> bool:
    """At a kink the derivative can only be one of the one-sided slopes (or lie between them)."""
    low, high = min(slopes), max(slopes)
    margin = 1e-3 * (abs(low) + abs(high))
    return low - margin <= value <= high + margin


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
          seed: int = 0, tolerance: float = 1e-6, max_kink_share: float = 0.5) -> GradcheckReport:
    """The generic check: ``objective()`` evaluates L from the current values of ``tensors``.

    ``analytic`` holds the explicit-backprop gradient of each tensor (same names and shapes);
    each tensor is perturbed in place, one element at a time, and restored to its exact value.

    An entry whose step-h central difference disagrees with the analytic value (relative error at
    least ``tolerance``) is looked at again with the step h/10. Either the gradient is wrong, or L is
    not smooth within h of the entry: a ReLU input or a max-pool race near its switching point, where
    the central difference mixes two slopes.

    - A **kink** within h/10: the gap between the one-sided slopes does not shrink with the step (see
      ``is_kink``). There is no numeric reference; the entry is counted in ``kinks`` and left out,
      provided the analytic value lies between the one-sided slopes (no derivative can lie outside).
    - Otherwise the step-h/10 difference is the reference (column ``h/10``): it is past a kink crossed
      between h/10 and h, and closer still for a smooth L. A wrong gradient stays wrong at any step.

    When more than ``max_kink_share`` of a tensor's checked entries are kinks, the check compared
    too little to mean anything, and it raises a ValueError instead of reporting a pass.
    """
    if not h > 0:
        raise ValueError(f"gradcheck: the step h must be > 0, got {h}")
    if not 0 <= max_kink_share <= 1:
        raise ValueError(f"gradcheck: max_kink_share must be in [0, 1], got {max_kink_share}")
    rng = np.random.default_rng(seed)
    report = GradcheckReport()
    base = objective()

    def differences(tensor, index, step):
        # A Python float: on CuPy, tensor[index] is a 0-d view that would follow the writes below.
        original = tensor[index].item()
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
        refined = np.zeros(len(flat_indices), dtype=bool)
        for k, flat in enumerate(flat_indices):
            index = np.unravel_index(flat, tensor.shape)
            plus, minus = differences(tensor, index, h)
            numeric[k] = (plus - minus) / (2 * h)
            if relative_error(grad[flat], numeric[k]) < tolerance:
                continue
            fine_plus, fine_minus = differences(tensor, index, h / 10)
            fine = one_sided_slopes(fine_plus, base, fine_minus, h / 10)
            if is_kink(one_sided_slopes(plus, base, minus, h), fine) and _between(grad[flat], fine):
                kink[k] = True
            else:
                numeric[k] = (fine_plus - fine_minus) / (h / 5)
                refined[k] = True
        errors = np.where(kink, 0.0, relative_error(grad[flat_indices], numeric))
        worst = int(np.argmax(errors))
        index = tuple(int(i) for i in np.unravel_index(flat_indices[worst], tensor.shape))
        result = TensorCheck(name, float(errors[worst]), index, float(grad[flat_indices[worst]]),
                             float(numeric[worst]), len(flat_indices), int(kink.sum()), int(refined.sum()))
        report.checks.append(result)
        if result.kinks > max_kink_share * result.checked:
            raise ValueError(
                f"gradcheck: {result.kinks} of the {result.checked} checked entries of {name!r} lie on a "
                f"kink (more than {max_kink_share:.0%}), where a numerical derivative means nothing, so "
                "this check would prove little; choose inputs (and parameters) that put no ReLU or "
                f"LeakyReLU input exactly at 0 and no two max-pool inputs in a tie.\n{report}")
    return report


def check_layer(layer, x, training: bool = False, h: float = 1e-5, max_checks: int | None = None,
                seed: int = 0) -> GradcheckReport:
    """Check dL/dx and every parameter gradient of one layer on the float64 batch ``x``."""
    return check_model(_SingleLayer(layer), x, training=training, h=h, max_checks=max_checks, seed=seed)


def check_model(model, x, training: bool = False, h: float = 1e-5, max_checks: int | None = None,
                seed: int = 0) -> GradcheckReport:
    """Check dL/dx and every parameter gradient of a whole model (``forward``/``backward``/``layers``)."""
    xp = _array_module(model.layers)
    x = xp.asarray(np.array(backend.to_numpy(x), dtype=np.float64))
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
        # fsum rounds once, at the end: the outputs a perturbation leaves alone add no round-off of their own.
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


def _array_module(layers):
    """numpy or cupy: where the layers' parameters live (the current device when they have none)."""
    for layer in layers:
        for value in layer.params.values():
            return backend.get_array_module(value)
    return backend.device_module()


class _SingleLayer:
    """Lets ``check_model`` drive one layer."""

    def __init__(self, layer):
        self.layers = [layer]

    def forward(self, x, training=False):
        return self.layers[0].forward(x, training)

    def backward(self, dy):
        return self.layers[0].backward(dy)
