r"""Optimizers that update parameter arrays in place, each by Keras 3's rule and defaults.

Every optimizer takes ``learning_rate`` (``lr`` is Keras 2's name for it) and Keras 2's ``decay``:
step t (from 1) uses ``lr_t = learning_rate / (1 + decay * (t - 1))`` (decay 0: a constant rate).
Below, ``g`` is a parameter's gradient and every other letter a slot of the same shape.

Adam (Keras defaults lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), at step t = 1, 2, ...:

    m = beta_1 m + (1 - beta_1) g
    v = beta_2 v + (1 - beta_2) g^2
    a = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (bias correction folded into the step size)
    w = w - a * m / (sqrt(v) + epsilon)

This is Keras's placement of epsilon (outside the bias-corrected sqrt), which differs slightly
from the paper's ``m_hat / (sqrt(v_hat) + eps)``.

SGD (Keras): ``velocity = momentum * velocity - lr * g``; ``w += velocity``
(Nesterov: ``w += momentum * velocity - lr * g``).

RMSprop (lr=0.001, rho=0.9, momentum=0, epsilon=1e-7, centered=False); epsilon inside the root,
as in Keras 3 (PyTorch adds it outside):

    v = rho v + (1 - rho) g^2
    centered:  a = rho a + (1 - rho) g;  d = v - a^2 + epsilon     else  d = v + epsilon
    step = lr g / sqrt(d);   momentum > 0:  u = momentum u + step;  w -= u     else  w -= step

Adagrad (lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7):

    s = s + g^2;   w -= lr g / sqrt(s + epsilon)

Adadelta (lr=0.001, rho=0.95, epsilon=1e-7), with RMS(x) = sqrt(x + epsilon):

    s = rho s + (1 - rho) g^2;   delta = -RMS(d) / RMS(s) g;   d = rho d + (1 - rho) delta^2;   w += lr delta

Nadam (lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), Dozat's Nesterov-momentum Adam with
Keras's momentum schedule ``mu_t = beta_1 (1 - 0.5 * 0.96^(0.004 t))`` and ``P_t = mu_1 ... mu_t``:

    m = beta_1 m + (1 - beta_1) g;   v = beta_2 v + (1 - beta_2) g^2
    m_hat = mu_{t+1} m / (1 - P_{t+1}) + (1 - mu_t) g / (1 - P_t);   v_hat = v / (1 - beta_2^t)
    w -= lr m_hat / (sqrt(v_hat) + epsilon)

AdamW (Adam's defaults, weight_decay=0.004): first ``w -= lr * weight_decay * w`` (decoupled weight
decay, Loshchilov and Hutter), then Adam's step.

The state (step count and slot arrays) can be read and restored, for checkpoints.
"""
from __future__ import annotations

import math

import numpy as np

from . import arguments, kernels
from .backend import get_array_module, is_gpu_array, to_numpy


class Optimizer:
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, lr: float | None = None, decay: float = 0.0):
        owner = type(self).__name__
        self.learning_rate = arguments.number(learning_rate, "learning_rate", owner, low=0, low_open=True)
        if lr is not None:  # Keras's old name; it wins, as in Keras
            self.learning_rate = arguments.number(lr, "lr", owner, low=0, low_open=True)
        self.decay = arguments.number(decay, "decay", owner, low=0)
        self.iterations = 0
        self.slots: dict[str, list] = {name: [] for name in self.slot_names}

    def _ensure_slots(self, params) -> None:
        """One slot array per parameter, on the parameter's device, with its shape and dtype.

        ``new_slot`` for new parameters (or parameters of another shape or dtype); a model moved to the
        other device keeps its slots' values, moved with it.
        """
        if not self.slot_names:
            return
        current = self.slots[self.slot_names[0]]
        if len(current) != len(params) or any(tuple(s.shape) != tuple(p.shape) or s.dtype != p.dtype
                                               for s, p in zip(current, params)):
            for name in self.slot_names:
                self.slots[name] = [self.new_slot(p, name) for p in params]
        elif any(is_gpu_array(s) != is_gpu_array(p) for s, p in zip(current, params)):
            for name in self.slot_names:
                self.slots[name] = [get_array_module(p).asarray(to_numpy(s)) for s, p in zip(self.slots[name], params)]

    def new_slot(self, param, name: str):
        """A new parameter's slot ``name``: zeros (Adagrad's accumulator starts elsewhere)."""
        return get_array_module(param).zeros_like(param)

    def step(self, params: list, grads: list) -> None:
        """Update every array of ``params`` in place from ``grads`` (same order and shapes)."""
        if len(params) != len(grads):
            raise ValueError(f"{type(self).__name__}.step: {len(params)} parameters but {len(grads)} gradients")
        self._ensure_slots(params)
        self.iterations += 1
        self.apply(params, grads)

    def current_learning_rate(self) -> float:
        """The rate of the step being taken (``iterations`` already counts it): Keras 2's ``decay``."""
        return self.learning_rate / (1 + self.decay * (self.iterations - 1))

    def snapshot(self) -> tuple:
        """The state as it is now, copied where it lives (no transfer): ``restore_snapshot`` undoes
        the steps taken since, as a refused training step needs."""
        return self.iterations, {name: [a.copy() for a in arrays] for name, arrays in self.slots.items()}

    def restore_snapshot(self, snapshot: tuple) -> None:
        self.iterations, slots = snapshot
        self.slots = {name: list(arrays) for name, arrays in slots.items()}

    def get_state(self) -> dict:
        """``{"iterations": t, "learning_rate": lr, "slots": {name: [host arrays]}}`` (the rate too:
        a callback may have changed it during the run)."""
        return {"iterations": self.iterations, "learning_rate": self.learning_rate,
                "slots": {name: [to_numpy(a).copy() for a in arrays] for name, arrays in self.slots.items()}}

    def check_state(self, state: dict, params: list, source: str = "") -> None:
        """Raise ``ValueError`` unless ``state`` (from ``get_state``) fits ``params``; changes nothing.

        Before its first step an optimizer has no slots yet: such a state (``iterations`` 0, empty
        slot lists) fits any model."""
        owner = f"{source + ': ' if source else ''}{type(self).__name__}.set_state"
        iterations, slots = state.get("iterations"), state.get("slots")
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"{owner}: expected a step count >= 0, got {iterations!r}")
        rate = state.get("learning_rate", self.learning_rate)  # absent from checkpoints of earlier versions
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not rate > 0:
            raise ValueError(f"{owner}: expected a learning rate > 0, got {rate!r}")
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
        self.learning_rate = float(state.get("learning_rate", self.learning_rate))


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, lr: float | None = None, decay: float = 0.0):
        owner = type(self).__name__
        # beta = 1 would divide by 1 - beta^t = 0 in the bias correction; epsilon = 0 by sqrt(v) = 0
        self.beta_1 = arguments.number(beta_1, "beta_1", owner, low=0, high=1, high_open=True)
        self.beta_2 = arguments.number(beta_2, "beta_2", owner, low=0, high=1, high_open=True)
        self.epsilon = arguments.number(epsilon, "epsilon", owner, low=0, low_open=True)
        super().__init__(learning_rate, lr, decay)

    def apply(self, params, grads):
        t = self.iterations
        # A Python float: a NumPy float64 scalar would promote float32 arithmetic on some backends.
        step_size = self.current_learning_rate() * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        for w, g, m, v in zip(params, grads, self.slots["m"], self.slots["v"]):
            kernels.adam_update(w, g, m, v, step_size, self.beta_1, self.beta_2, self.epsilon)


class SGD(Optimizer):
    slot_names = ("velocity",)

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 lr: float | None = None, decay: float = 0.0):
        self.momentum = arguments.number(momentum, "momentum", "SGD", low=0, high=1, high_open=True)
        self.nesterov = arguments.boolean(nesterov, "nesterov", "SGD")
        super().__init__(learning_rate, lr, decay)

    def apply(self, params, grads):
        lr = self.current_learning_rate()
        for w, g, velocity in zip(params, grads, self.slots["velocity"]):
            velocity *= self.momentum
            velocity -= lr * g
            if self.nesterov:
                w += self.momentum * velocity - lr * g
            else:
                w += velocity


class RMSprop(Optimizer):
    slot_names = ("velocity", "average_gradient", "momentum")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, lr: float | None = None, decay: float = 0.0):
        self.rho = arguments.number(rho, "rho", "RMSprop", low=0, high=1, high_open=True)
        self.momentum = arguments.number(momentum, "momentum", "RMSprop", low=0, high=1, high_open=True)
        self.epsilon = arguments.number(epsilon, "epsilon", "RMSprop", low=0, low_open=True)
        self.centered = arguments.boolean(centered, "centered", "RMSprop")
        super().__init__(learning_rate, lr, decay)

    def apply(self, params, grads):
        lr, rho = self.current_learning_rate(), self.rho
        xp = get_array_module(params[0]) if params else np
        for w, g, v, a, u in zip(params, grads, *(self.slots[name] for name in self.slot_names)):
            v *= rho
            v += (1 - rho) * g * g
            if self.centered:
                a *= rho
                a += (1 - rho) * g
                step = lr * g / xp.sqrt(v - a * a + self.epsilon)
            else:
                step = lr * g / xp.sqrt(v + self.epsilon)
            if self.momentum > 0:
                u *= self.momentum
                u += step
                w -= u
            else:
                w -= step


class Adagrad(Optimizer):
    slot_names = ("accumulator",)

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, lr: float | None = None, decay: float = 0.0):
        self.initial_accumulator_value = arguments.number(initial_accumulator_value, "initial_accumulator_value",
                                                          "Adagrad", low=0)
        self.epsilon = arguments.number(epsilon, "epsilon", "Adagrad", low=0, low_open=True)
        super().__init__(learning_rate, lr, decay)

    def new_slot(self, param, name: str):
        return get_array_module(param).full_like(param, self.initial_accumulator_value)

    def apply(self, params, grads):
        lr = self.current_learning_rate()
        for w, g, s in zip(params, grads, self.slots["accumulator"]):
            s += g * g
            w -= lr * g / get_array_module(w).sqrt(s + self.epsilon)


class Adadelta(Optimizer):
    slot_names = ("accumulated_gradient", "accumulated_delta")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 lr: float | None = None, decay: float = 0.0):
        self.rho = arguments.number(rho, "rho", "Adadelta", low=0, high=1, high_open=True)
        self.epsilon = arguments.number(epsilon, "epsilon", "Adadelta", low=0, low_open=True)
        super().__init__(learning_rate, lr, decay)

    def apply(self, params, grads):
        lr, rho, eps = self.current_learning_rate(), self.rho, self.epsilon
        for w, g, s, d in zip(params, grads, self.slots["accumulated_gradient"], self.slots["accumulated_delta"]):
            xp = get_array_module(w)
            s *= rho
            s += (1 - rho) * g * g
            delta = -xp.sqrt(d + eps) / xp.sqrt(s + eps) * g
            d *= rho
            d += (1 - rho) * delta * delta
            w += lr * delta


class Nadam(Adam):
    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, lr: float | None = None, decay: float = 0.0):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, lr, decay)
        self.known_product = (0, 1.0)  # (t, P_t): a memo, P_t is a function of t alone

    def momentum_product(self, t: int) -> float:
        """``P_t = mu_1 mu_2 ... mu_t``, multiplied in order from the last one known, so that a resumed
        or rewound optimizer gets the same bits as one that never stopped."""
        known_t, product = self.known_product if self.known_product[0] <= t else (0, 1.0)
        for step in range(known_t + 1, t + 1):
            product *= self.momentum_at(step)
        self.known_product = (t, product)
        return product

    def momentum_at(self, t: int) -> float:
        return self.beta_1 * (1 - 0.5 * 0.96 ** (0.004 * t))

    def apply(self, params, grads):
        t, lr = self.iterations, self.current_learning_rate()
        mu, mu_next = self.momentum_at(t), self.momentum_at(t + 1)
        product = self.momentum_product(t)
        product_next = product * mu_next
        bias_2 = 1 - self.beta_2 ** t
        for w, g, m, v in zip(params, grads, self.slots["m"], self.slots["v"]):
            m *= self.beta_1
            m += (1 - self.beta_1) * g
            v *= self.beta_2
            v += (1 - self.beta_2) * g * g
            m_hat = mu_next * m / (1 - product_next) + (1 - mu) * g / (1 - product)
            w -= lr * m_hat / (get_array_module(w).sqrt(v / bias_2) + self.epsilon)


class AdamW(Adam):
    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, lr: float | None = None, decay: float = 0.0):
        self.weight_decay = arguments.number(weight_decay, "weight_decay", "AdamW", low=0)
        super().__init__(learning_rate, beta_1, beta_2, epsilon, lr, decay)

    def apply(self, params, grads):
        shrink = self.current_learning_rate() * self.weight_decay
        for w in params:
            w -= shrink * w
        super().apply(params, grads)


OPTIMIZERS = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
              "nadam": Nadam, "adamw": AdamW}


def get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if not isinstance(identifier, str) or identifier not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown optimizer {identifier!r}; expected one of {sorted(OPTIMIZERS)} "
                         "or an Optimizer instance")
    return OPTIMIZERS[identifier]()
