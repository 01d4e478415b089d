"""Training: ``compile``, the training step, and ``fit`` / ``evaluate`` / ``predict`` built on it.

One training step on a batch ``(x, y)``:

1. forward with ``training=True`` (dropout active),
2. the loss and its gradient with respect to the model output,
3. backward through every layer (explicit backprop fills each layer's ``grads``),
4. the optimizer updates every parameter in place.

When the model ends in a sigmoid and the loss is ``BinaryCrossentropy(from_logits=False)``, steps
2-3 are fused: the sigmoid is skipped and the loss is taken in its logits form on the sigmoid's
input ``z``, whose gradient is ``(sigmoid(z) - y) / (N * L)`` (see ``losses.py``).

``fit`` repeats the step over batches and epochs and calls the callbacks (see ``callbacks.py``).
The logged ``loss`` and ``accuracy`` of an epoch are means over its training batches (dropout on),
weighted by batch size; ``val_loss`` and ``val_accuracy`` are computed at the end of the epoch
with dropout off. ``"accuracy"`` is *binary* accuracy (``p > 0.5`` against each label), not the
categorical accuracy Keras would pick for an 18-unit output.

``evaluate`` and ``predict`` take NumPy arrays (``evaluate`` also an iterator), move one batch at a
time to the model's device and bring the results back, so at most one batch of activations
exists at any time, whichever the device.
"""
from __future__ import annotations

import math
import signal
import sys
import threading

import numpy as np
from tqdm.auto import tqdm

from . import backend, kernels, losses, optimizers
from .batches import ArrayIterator, check_images, check_labels
from .callbacks import Callback, ProgressBar, TrainingCheckpoint


class Trainable:
    """Mixed into ``Model``: everything that needs a loss and an optimizer."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self.fuse_sigmoid = False
        self.stop_training = False
        self.pending_data_state = None  # set by checkpoint.load_checkpoint for fit's array iterator

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
        # Each layer says whether it ends in a sigmoid (Sigmoid, Activation("sigmoid"), activation=...).
        return self.layers[-1].ends_in_sigmoid

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
        return last.forward_logits(x, training)

    def backward_logits(self, dz, input_gradient: bool = True):
        """Backward pass from dL/dz, the gradient at the final sigmoid's input (see ``backward``)."""
        *body, last = self.layers
        return self.backward_layers(body, last.backward_logits(dz), input_gradient)

    def train_step(self, x, y):
        """One optimisation step on a batch; returns ``(loss, predictions)`` (predictions on the device).

        A non-finite output gives a NaN loss and no update, so that callbacks can stop cleanly.
        """
        self._require_compiled("training")
        with kernels.step_threads():  # fewer BLAS threads while other processes want the cores
            loss, predictions = self._loss_and_predictions(x, y, training=True)
            if math.isnan(loss):
                return loss, predictions
            if self.fuse_sigmoid:
                self.backward_logits(self.logits_loss.backward(), input_gradient=False)
            else:
                self.backward(self.loss.backward(), input_gradient=False)
            self.optimizer.step(self.trainable_params(), self.gradients())
        return loss, predictions

    # --- fit ---------------------------------------------------------------------------------------
    def fit(self, x, y=None, batch_size: int = 32, epochs: int = 1, verbose: int = 1, callbacks=None,
            validation_data=None, shuffle: bool = True, initial_epoch: int = 0,
            steps_per_epoch: int | None = None) -> "History":
        """Train for ``epochs - initial_epoch`` epochs; returns a ``History``.

        Parameters
        ----------
        x : images (N, H, W, C) with labels ``y`` (N, L) in [0, 1], or an iterator of
            ``(x_batch, y_batch)`` with ``len()`` (such as ``ImageDataGenerator.flow(...)``), then ``y=None``.
        batch_size, shuffle : used with arrays (a new permutation each epoch, from the seeded generator).
        epochs : the index of the last epoch, plus one (as in Keras, not a count when resuming).
        verbose : 1 progress bar, 2 one line per epoch, 0 silent.
        callbacks : a list of ``tinyconv.callbacks.Callback``.
        validation_data : ``(x_val, y_val)`` arrays or an iterator, evaluated after each epoch.
        initial_epoch : the epoch to start from (the ``epoch`` a checkpoint returns on resume).
        steps_per_epoch : batches per epoch; default ``len`` of the data (one pass).

        Ctrl-C stops at the end of the running batch; a ``TrainingCheckpoint`` callback then saves
        the run and prints how to resume it. ``history.interrupted`` tells whether that happened.
        """
        self._require_compiled("fit")
        data = self._batches(x, y, batch_size, shuffle, "fit")
        if isinstance(data, ArrayIterator) and self.pending_data_state is not None:
            data.set_state(self.pending_data_state)
        self.pending_data_state = None
        steps = int(steps_per_epoch or len(data))
        if steps < 1:
            raise ValueError(f"model {self.name!r}: fit needs at least one batch per epoch, got {steps}")
        if validation_data is not None:
            validation_data = self._validation_pair(validation_data, batch_size)
        history = History()
        user = list(callbacks or [])
        for callback in user:
            if not isinstance(callback, Callback):
                raise TypeError(f"model {self.name!r}: callbacks must be tinyconv.callbacks.Callback "
                                f"instances, got {type(callback).__name__}")
        # Checkpoints go last so that they save the other callbacks' state after their epoch update.
        ordered = ([history] + ([ProgressBar(verbose)] if verbose else [])
                   + [cb for cb in user if not isinstance(cb, TrainingCheckpoint)]
                   + [cb for cb in user if isinstance(cb, TrainingCheckpoint)])
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "initial_epoch": initial_epoch,
                  "data": data, "callbacks": user}
        for callback in ordered:
            callback.set_model(self)
            callback.set_params(params)

        self.stop_training = False
        with _StopOnCtrlC() as ctrl_c:
            for callback in ordered:
                callback.on_train_begin()
            try:
                for epoch in range(initial_epoch, epochs):
                    for callback in ordered:
                        callback.on_epoch_begin(epoch)
                    logs = self._train_epoch(data, steps, ordered, ctrl_c)
                    if ctrl_c.requested:  # also when pressed during the last validation: no batch ran
                        history.interrupted = True
                        for callback in ordered:
                            callback.on_interrupt(epoch)
                        break
                    if validation_data is not None:
                        val = self.evaluate(*validation_data, batch_size=batch_size, return_dict=True)
                        logs.update({f"val_{key}": value for key, value in val.items()})
                    for callback in ordered:
                        callback.on_epoch_end(epoch, dict(logs))
                    if self.stop_training:
                        break
            finally:  # close the log file and the progress bar whatever happened
                for callback in ordered:
                    callback.on_train_end()
        return history

    def _train_epoch(self, data, steps: int, callbacks: list, ctrl_c) -> dict:
        """Run ``steps`` training steps; returns the epoch's batch-size-weighted mean logs."""
        sums: dict[str, float] = {}
        seen = 0
        logs: dict[str, float] = {}
        for step in range(steps):
            if self.stop_training or ctrl_c.requested:
                break
            x_batch, y_batch = next(data)
            if not isinstance(data, ArrayIterator):  # arrays were checked once, up front
                self._check_batch(x_batch, y_batch, "fit")
            loss, predictions = self.train_step(x_batch, y_batch)
            n = len(x_batch)
            seen += n
            for key, value in self._batch_metrics(loss, predictions, y_batch).items():
                sums[key] = sums.get(key, 0.0) + value * n
            logs = {key: total / seen for key, total in sums.items()}
            for callback in callbacks:
                callback.on_train_batch_end(step, dict(logs))
        return logs

    def _batch_metrics(self, loss: float, predictions, y_batch) -> dict[str, float]:
        metrics = {"loss": float(loss)}
        if self.metrics:
            # Compared where the predictions live: one scalar comes back, not the whole batch.
            xp = backend.get_array_module(predictions)
            hits = self.to_model_device(y_batch) == (predictions > 0.5)
            accuracy = float(xp.mean(hits))
            for name in self.metrics:
                metrics[name] = accuracy
        return metrics

    # --- evaluate and predict -------------------------------------------------------------------------
    def evaluate(self, x, y=None, batch_size: int = 32, verbose: int = 0, return_dict: bool = False):
        """Loss (and metrics) over a whole dataset, batch by batch, dropout off.

        Returns the loss alone when compiled without metrics, else ``[loss, accuracy]``
        (or ``{"loss": ..., "accuracy": ...}`` with ``return_dict=True``), means weighted by batch size.
        """
        self._require_compiled("evaluate")
        data = self._batches(x, y, batch_size, False, "evaluate")
        sums: dict[str, float] = {}
        seen = 0
        for _ in _progress(range(len(data)), verbose, "evaluate"):
            x_batch, y_batch = next(data)
            if not isinstance(data, ArrayIterator):
                self._check_batch(x_batch, y_batch, "evaluate")
            loss, predictions = self._loss_and_predictions(x_batch, y_batch)
            for key, value in self._batch_metrics(loss, predictions, y_batch).items():
                sums[key] = sums.get(key, 0.0) + value * len(x_batch)
            seen += len(x_batch)
        results = {key: total / seen for key, total in sums.items()}
        if return_dict:
            return results
        return results["loss"] if len(results) == 1 else list(results.values())

    def _loss_and_predictions(self, x_batch, y_batch, training: bool = False):
        """The loss (fused with a final sigmoid when possible) and the probabilities of a batch.

        A non-finite model output returns a NaN loss instead of reaching the loss, which would refuse it.
        """
        y = self.to_model_device(y_batch)
        if self.fuse_sigmoid:
            z = self.forward_logits(x_batch, training)
            if not _all_finite(z):
                return math.nan, z
            loss = self.logits_loss.forward(z, y)
            return loss, self.logits_loss.cache[0]  # sigmoid(z), computed by the loss
        predictions = self.forward(x_batch, training)
        if not _all_finite(predictions):
            return math.nan, predictions
        return self.loss.forward(predictions, y), predictions

    def predict(self, x, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Model outputs for images ``x`` (N, H, W, C), as a NumPy array (N, *output_shape)."""
        if isinstance(x, (list, tuple)) or not hasattr(x, "ndim"):
            raise TypeError(f"model {self.name!r}: predict takes a NumPy array of images (N, H, W, C), "
                            f"got {type(x).__name__}")
        self._check_images(x, "predict")
        outputs = None
        for start in _progress(range(0, len(x), batch_size), verbose, "predict"):
            batch = backend.to_numpy(self.forward(x[start:start + batch_size], training=False))
            if outputs is None:
                outputs = np.empty((len(x), *batch.shape[1:]), dtype=batch.dtype)
            outputs[start:start + len(batch)] = batch
        return outputs

    # --- input checks ----------------------------------------------------------------------------------
    def _batches(self, x, y, batch_size: int, shuffle: bool, owner: str):
        """Arrays become an ``ArrayIterator``; an iterator of batches is used as it is."""
        if hasattr(x, "ndim"):
            if y is None:
                raise ValueError(f"model {self.name!r}: {owner} got images but no labels y")
            self._check_images(x, owner)
            check_labels(y, len(x), f"model {self.name!r}: {owner}")
            self._check_label_width(y, owner)
            return ArrayIterator(x, y, batch_size, shuffle)
        if y is not None:
            raise ValueError(f"model {self.name!r}: {owner} got an iterator of (x, y) batches and also y; "
                             "the iterator brings its own labels, pass y=None")
        if not (hasattr(x, "__next__") and hasattr(x, "__len__")):
            raise TypeError(f"model {self.name!r}: {owner} expected arrays (x, y) or an iterator of "
                            f"(x_batch, y_batch) with len(), such as ImageDataGenerator.flow(...); "
                            f"got {type(x).__name__}")
        return x

    def _validation_pair(self, validation_data, batch_size: int):
        if isinstance(validation_data, tuple) and len(validation_data) == 2:
            x_val, y_val = validation_data
            self._batches(x_val, y_val, batch_size, False, "fit (validation_data)")  # fail before training
            return x_val, y_val
        self._batches(validation_data, None, batch_size, False, "fit (validation_data)")
        return (validation_data,)

    def _check_images(self, x, owner: str) -> None:
        where = f"model {self.name!r}: {owner}"
        check_images(x, where)
        expected = self.layers[0].input_shape if self.layers else None
        if expected is not None and tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(f"{where}: the model expects images of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")

    def _check_label_width(self, y, owner: str) -> None:
        expected = self.layers[-1].output_shape if self.layers else None
        if expected is not None and tuple(y.shape[1:]) != tuple(expected):
            raise ValueError(f"model {self.name!r}: {owner}: the model has {expected[0]} outputs, "
                             f"the labels have shape {tuple(y.shape)}")

    def _check_batch(self, x_batch, y_batch, owner: str) -> None:
        self._check_images(x_batch, owner)
        check_labels(y_batch, len(x_batch), f"model {self.name!r}: {owner}")
        self._check_label_width(y_batch, owner)


class History(Callback):
    """``history.history``: a dict of per-epoch lists (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``); ``history.epoch``: the epoch indices; ``history.interrupted``: Ctrl-C happened."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.interrupted = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class _StopOnCtrlC:
    """While ``fit`` runs, the first Ctrl-C only sets ``requested`` (the loop stops at the end of the
    batch, so no half-updated weights); a second one interrupts at once. The previous handler is
    restored on exit. Signal handlers can only be set from the main thread; elsewhere Ctrl-C keeps
    its usual meaning."""

    def __enter__(self):
        self.requested = False
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping at the end of this batch (press Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc_info):
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _progress(iterable, verbose: int, what: str):
    if verbose != 1:
        return iterable
    return tqdm(iterable, desc=what, unit="batch", file=sys.stdout, leave=False)


def _all_finite(x) -> bool:
    return bool(backend.get_array_module(x).isfinite(x).all())
