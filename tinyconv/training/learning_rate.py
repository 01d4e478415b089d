"""Callbacks that change the learning rate during ``fit`` (Keras's names, arguments and defaults).

- ``LearningRateScheduler(schedule)``: before each epoch, ``lr = schedule(epoch, lr)`` (or
  ``schedule(epoch)``, for a function of one argument, as Keras allows);
- ``ReduceLROnPlateau``: multiply the rate by ``factor`` when ``monitor`` has not improved by more
  than ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs before counting again,
  never going below ``min_lr``.

Both write the epoch's rate into the logs as ``learning_rate`` (Keras 3's key), so ``History`` and
``CSVLogger`` record it. The rate itself is part of the optimizer's state, and the plateau counters
are this callback's state: a run resumed from a ``TrainingCheckpoint`` goes on with the same rates.
"""
from __future__ import annotations

import inspect
import math
import sys

import numpy as np

from .. import arguments
from .callbacks import Callback, check_monitor, monitor_op_for


class LearningRateScheduler(Callback):
    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function of (epoch, lr) or (epoch), "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = arguments.integer(verbose, "verbose", "LearningRateScheduler", low=0)
        self.takes_rate = _positional_parameters(schedule) != 1

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        rate = self.schedule(epoch, optimizer.learning_rate) if self.takes_rate else self.schedule(epoch)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) \
                or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"LearningRateScheduler: the schedule returned {rate!r} for epoch {epoch}; "
                             "expected a learning rate > 0 (a float)")
        optimizer.learning_rate = float(rate)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(rate)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class ReduceLROnPlateau(Callback):
    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        owner = "ReduceLROnPlateau"
        self.monitor_op = monitor_op_for(monitor, mode, owner)
        self.monitor = monitor
        self.factor = arguments.number(factor, "factor", owner, low=0, high=1, low_open=True, high_open=True)
        self.patience = arguments.integer(patience, "patience", owner, low=0)
        self.verbose = arguments.integer(verbose, "verbose", owner, low=0)
        self.min_delta = arguments.number(min_delta, "min_delta", owner, low=0)
        self.cooldown = arguments.integer(cooldown, "cooldown", owner, low=0)
        self.min_lr = arguments.number(min_lr, "min_lr", owner, low=0)
        self.resumed = False
        self.reset()

    def reset(self) -> None:
        self.wait = 0
        self.cooldown_counter = 0
        self.best = np.inf if self.monitor_op is np.less else -np.inf

    def check_params(self, params):
        check_monitor(self.monitor, params, "ReduceLROnPlateau")

    def on_train_begin(self, logs=None):
        if not self.resumed:  # a resumed run keeps its counters
            self.reset()
        self.resumed = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = optimizer.learning_rate
        value = logs.get(self.monitor)
        if value is None:
            print(f"ReduceLROnPlateau: metric {self.monitor!r} is not available; available: {sorted(logs)}",
                  file=sys.stderr)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        better = value < self.best - self.min_delta if self.monitor_op is np.less else value > self.best + self.min_delta
        if better:
            self.best, self.wait = float(value), 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and optimizer.learning_rate > self.min_lr:
                optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                          f"{optimizer.learning_rate}.")
                self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self) -> dict:
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best}

    def set_state(self, state: dict) -> None:
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])
        self.best = float(state["best"])
        self.resumed = True


def _positional_parameters(function) -> int | None:
    """How many positional arguments ``function`` takes (None when it takes any number, or cannot tell)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
