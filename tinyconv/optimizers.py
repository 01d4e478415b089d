r"""Optimizers that update parameter arrays in place: Adam and SGD (with momentum).

Adam (Keras defaults lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), at step t = 1, 2, ...:

    m = beta_1 m + (1 - beta_1) g
    v = beta_2 v + (1 - beta_2) g^2
    a = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (bias correction folded into the step size)
    w = w - a * m / (sqrt(v) + epsilon)

This is Keras's placement of epsilon (outside the bias-corrected sqrt), which differs slightly
from the paper's ``m_hat / (sqrt(v_hat) + eps)``.

SGD (Keras): ``velocity = momentum * velocity - lr * g``; ``w += velocity``
(Nesterov: ``w += momentum * velocity - lr * g``).

The state (step count and moment arrays) can be read and restored, for checkpoints.
"""
from __future__ import annotations

import math

import numpy as np

from . import arguments, kernels
from .backend import get_array_module, is_gpu_array, to_numpy


class Optimizer:
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, lr: float | None = None):
        owner = type(self).__name__
        self.learning_rate = arguments.number(learning_rate, "learning_rate", owner, low=0, low_open=True)
        if lr is not None:  # Keras's old name; it wins, as in Keras
            self.learning_rate = arguments.number(lr, "lr", owner, low=0, low_open=True)
        self.iterations = 0
        self.slots: dict[str, list] = {name: [] for name in self.slot_names}

    def _ensure_slots(self, params) -> None:
        """One slot array per parameter, on the parameter's device, with its shape and dtype.

        Zeros for new parameters (or parameters of another shape or dtype); a model moved to the
        other device keeps its slots' values, moved with it.
        """
        if not self.slot_names:
            return
        current = self.slots[self.slot_names[0]]
        if len(current) != len(params) or any(tuple(s.shape) != tuple(p.shape) or s.dtype != p.dtype
                                               for s, p in zip(current, params)):
            for name in self.slot_names:
                self.slots[name] = [get_array_module(p).zeros_like(p) for p in params]
        elif any(is_gpu_array(s) != is_gpu_array(p) for s, p in zip(current, params)):
            for name in self.slot_names:
                self.slots[name] = [get_array_module(p).asarray(to_numpy(s)) for s, p in zip(self.slots[name], params)]

    def step(self, params: list, grads: list) -> None:
        """Update every array of ``params`` in place from ``grads`` (same order and shapes)."""
        if len(params) != len(grads):
            raise ValueError(f"{type(self).__name__}.step: {len(params)} parameters but {len(grads)} gradients")
        self._ensure_slots(params)
        self.iterations += 1
        self.apply(params, grads)

    def snapshot(self) -> tuple:
        """The state as it is now, copied where it lives (no transfer): ``restore_snapshot`` undoes
        the steps taken since, as a refused training step needs."""
        return self.iterations, {name: [a.copy() for a in arrays] for name, arrays in self.slots.items()}

    def restore_snapshot(self, snapshot: tuple) -> None:
        self.iterations, slots = snapshot
        self.slots = {name: list(arrays) for name, arrays in slots.items()}

    def get_state(self) -> dict:
        """``{"iterations": t, "slots": {name: [host arrays]}}``."""
        return {"iterations": self.iterations,
                "slots": {name: [to_numpy(a).copy() for a in arrays] for name, arrays in self.slots.items()}}

    def check_state(self, state: dict, params: list, source: str = "") -> None:
        """Raise ``ValueError`` unless ``state`` (from ``get_state``) fits ``params``; changes nothing.

        Before its first step an optimizer has no slots yet: such a state (``iterations`` 0, empty
        slot lists) fits any model."""
        owner = f"{source + ': ' if source else ''}{type(self).__name__}.set_state"
        iterations, slots = state.get("iterations"), state.get("slots")
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"{owner}: expected a step count >= 0, got {iterations!r}")
        if not isinstance(slots, dict) or set(slots) != set(self.slot_names):
            raise ValueError(f"{owner}: expected the slots {list(self.slot_names)}, "
                             f"got {sorted(slots) if isinstance(slots, dict) else slots!r}")
        for name, arrays in slots.items():
            if len(arrays) == 0 and iterations == 0:
                continue  # saved before the first step
            if len(arrays) != len(params):
                raise ValueError(f"{owner}: state slot {name!r} holds {len(arrays)} arrays, which does not "
                                 f"fit the {len(params)} parameters of this model")
            for i, (param, saved) in enumerate(zip(params, arrays)):
                if tuple(param.shape) != tuple(np.shape(saved)):
                    raise ValueError(f"{owner}: slot {name!r} array {i} expected shape "
                                     f"{tuple(param.shape)}, got {np.shape(saved)}")

    def set_state(self, state: dict, params: list) -> None:
        """Restore a ``get_state()`` after checking that it fits ``params`` (nothing changes otherwise)."""
        self.check_state(state, params)
        if all(len(arrays) == 0 for arrays in state["slots"].values()):
            self.slots = {name: [] for name in self.slot_names}  # created at the first step
        else:
            self._ensure_slots(params)
            for name, arrays in state["slots"].items():
                for current, saved in zip(self.slots[name], arrays):
                    current[...] = get_array_module(current).asarray(saved, dtype=current.dtype)
        self.iterations = int(state["iterations"])


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, lr: float | None = None):
        # beta = 1 would divide by 1 - beta^t = 0 in the bias correction; epsilon = 0 by sqrt(v) = 0
        self.beta_1 = arguments.number(beta_1, "beta_1", "Adam", low=0, high=1, high_open=True)
        self.beta_2 = arguments.number(beta_2, "beta_2", "Adam", low=0, high=1, high_open=True)
        self.epsilon = arguments.number(epsilon, "epsilon", "Adam", low=0, low_open=True)
        super().__init__(learning_rate, lr)

    def apply(self, params, grads):
        t = self.iterations
        # A Python float: a NumPy float64 scalar would promote float32 arithmetic on some backends.
        step_size = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        for w, g, m, v in zip(params, grads, self.slots["m"], self.slots["v"]):
            kernels.adam_update(w, g, m, v, step_size, self.beta_1, self.beta_2, self.epsilon)


class SGD(Optimizer):
    slot_names = ("velocity",)

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 lr: float | None = None):
        self.momentum = arguments.number(momentum, "momentum", "SGD", low=0, high=1, high_open=True)
        self.nesterov = arguments.boolean(nesterov, "nesterov", "SGD")
        super().__init__(learning_rate, lr)

    def apply(self, params, grads):
        for w, g, velocity in zip(params, grads, self.slots["velocity"]):
            velocity *= self.momentum
            velocity -= self.learning_rate * g
            if self.nesterov:
                w += self.momentum * velocity - self.learning_rate * g
            else:
                w += velocity


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if not isinstance(identifier, str) or identifier not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown optimizer {identifier!r}; expected one of {sorted(OPTIMIZERS)} "
                         "or an Optimizer instance")
    return OPTIMIZERS[identifier]()
