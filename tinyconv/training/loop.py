"""Training: ``compile``, the training step, and ``fit`` / ``evaluate`` / ``predict`` built on it.

One training step on a batch ``(x, y)``:

1. forward with ``training=True`` (dropout active),
2. the loss and its gradient with respect to the model output,
3. backward through every layer (explicit backprop fills each layer's ``grads``),
4. the optimizer updates every parameter in place.

When the model ends in a sigmoid and the loss is ``BinaryCrossentropy(from_logits=False)``, steps
2-3 are fused: the sigmoid is skipped and the loss is taken in its logits form on the sigmoid's
input ``z``, whose gradient is ``(sigmoid(z) - y) / (N * L)`` (see ``losses.py``). A softmax
before ``CategoricalCrossentropy`` is fused the same way, with gradient ``(softmax(z) - y) / N``.

``fit`` repeats the step over batches and epochs and calls the callbacks (see ``callbacks.py``).
The logged ``loss`` and ``accuracy`` of an epoch are means over its training batches (dropout on),
weighted by batch size; ``val_loss`` and ``val_accuracy`` are computed at the end of the epoch
with dropout off. With binary cross-entropy ``"accuracy"`` is *binary* accuracy (``p > 0.5``
against each label), not the categorical accuracy Keras would pick for an 18-unit output; with
categorical cross-entropy it is categorical accuracy (the argmax matches the label's).

``evaluate`` and ``predict`` take NumPy arrays (``evaluate`` also an iterator), move one batch at a
time to the model's device and bring the results back, so at most one batch of activations
exists at any time, whichever the device.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

from .. import arguments, backend, losses, optimizers, random
from .. import metrics as metrics_module
from ..distributed.current import distribution
from .batches import ArrayIterator, check_images
from .callbacks import Callback, ProgressBar, TrainingCheckpoint
from .console import StopOnSignals, check_verbose, progress, summary_line


class Trainable:
    """Mixed into ``Model``: everything that needs a loss and an optimizer.

    Its contract with the model, which ``Model`` fulfils (see model.py): ``name``, ``layers``,
    ``graph_layers``, ``forward``, ``backward``, ``forward_logits``, ``backward_logits`` (the passes that stop at, and
    start from, a final sigmoid's or softmax's input), ``prepare_input``, ``to_model_device``,
    ``gradients``, ``trainable_params``, ``array_module``, ``output_layer`` and ``image_shape``.
    """

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self.metric_functions: list = []
        self.fuse_output = False
        self.stop_training = False

    def compile(self, optimizer="rmsprop", loss=None, metrics=None) -> None:
        """Choose the optimizer, the loss and the metrics (Keras's default optimizer is RMSprop).

        ``loss`` and each metric: a name, Keras's function of it, or an instance. ``"accuracy"``
        (or ``"acc"``) means binary accuracy with binary cross-entropy, categorical accuracy
        (argmax match) with categorical, and sparse categorical accuracy with sparse categorical
        cross-entropy (see ``tinyconv/metrics.py``); the logs keep the name as written."""
        owner = f"model {self.name!r}: compile"
        last = self.output_layer()
        if last is None:
            raise ValueError(f"model {self.name!r} has no layers: add them before compile")
        if loss is None:
            raise ValueError(f"{owner}: a loss is needed to train, e.g. loss='binary_crossentropy' (one sigmoid "
                             "per label) or 'categorical_crossentropy' (one class per image)")
        optimizer, loss = optimizers.get(optimizer), losses.get(loss)
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"{owner}: metrics must be a list, such as ['accuracy'], got {type(metrics).__name__}")
        named = [metrics_module.get(metric, loss, owner) for metric in metrics or []]
        names = [name for name, _ in named]
        if len(set(names)) != len(names):
            raise ValueError(f"{owner}: two metrics are named alike in {names}; each needs its own name in the logs")
        _check_loss_pitfalls(last, loss, owner)
        # Checked: from here on, state changes.
        self.optimizer, self.loss, self.metrics = optimizer, loss, names
        self.metric_functions = [function for _, function in named]
        # A final activation that is the loss's own link (sigmoid for binary, softmax over the
        # classes for categorical cross-entropy), however it is written, is fused with the loss.
        self.fuse_output = not self.loss.from_logits and self._ends_in(self.loss.link)
        if self.fuse_output:
            self.logits_loss = type(self.loss)(from_logits=True)

    def _ends_in(self, link: str) -> bool:
        """Whether the last layer ends in ``link`` ("sigmoid" or "softmax"), however it is written
        (a bare ``Sigmoid()``, ``Activation("softmax")``, ``activation=`` on a Dense): each layer says so
        through ``Layer.ends_in_sigmoid`` and ``Layer.ends_in_softmax``."""
        last = self.output_layer()
        return {"sigmoid": last.ends_in_sigmoid, "softmax": last.ends_in_softmax}.get(link, False)

    @property
    def compiled(self) -> bool:
        return self.optimizer is not None

    @property
    def metrics_names(self) -> list[str]:
        """The keys of the logs ``train_step`` returns (Keras's name): ``loss``, then the metrics. A
        subclass whose ``train_step`` returns other keys says so here."""
        return ["loss", *self.metrics]

    @property
    def needs_labels(self) -> bool:
        """Whether ``fit`` needs labels ``y`` with the images (a GAN learns from images alone)."""
        return True

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"model {self.name!r}: call compile(optimizer, loss) before {what}")

    # --- the step ------------------------------------------------------------------------------
    def train_step(self, data) -> dict[str, float]:
        """One optimisation step on a batch ``data = (x, y)``; returns its logs, ``{"loss": ...}`` and
        the metrics, as floats (Keras's contract).

        ``fit`` calls it for every batch and does everything around it (callbacks, progress, Ctrl-C,
        stopping at a non-finite loss, checkpoints). Override it to train differently, calling
        ``super().train_step(data)`` or not; ``tinyconv.gan.GAN`` does. A step whose loss or gradients
        are NaN or inf is refused: the weights, BatchNorm's moving statistics, the optimizer and the
        random generators stay as they were, and the logs say so with a loss of NaN or inf (NaN when
        only the gradients overflowed). Loss, metrics and the finite check come back from the device
        in one transfer.
        """
        self._require_compiled("train_step")
        x, y = unpack_batch(data, f"model {self.name!r}: train_step")
        y = self.to_model_device(y)
        put_back = keep_step_state(self.layers)
        moving = [layer.non_trainable_params[key] for layer in self.layers for key in layer.moving_statistics]
        # One process: one pass over the batch. Data-parallel: a pass per part, summed over the ranks.
        gradients, logs = distribution().step(self._gradients_and_logs, x, y, moving, put_back)
        gradients_finite = math.isfinite(logs.pop("gradients"))
        if math.isfinite(logs["loss"]) and gradients_finite:
            self.optimizer.step(self.trainable_params(), gradients)
        else:
            put_back()
            logs["loss"] = refused_loss(logs["loss"])
        return logs

    def _gradients_and_logs(self, x, y) -> tuple[list, dict[str, float]]:
        """Forward and backward on a batch: the gradients (the layers' ``grads``) and the logs, with
        ``"gradients"``: the sum of every gradient (non-finite when one of them is)."""
        # Overflow is caught by the caller, and said once.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, predictions, extra = self._loss_on_device(x, y, training=True, keep_caches=True)
            if self.fuse_output:
                self.backward_logits(self.logits_loss.backward(), input_gradient=False)
            else:
                self.backward(self.loss.backward(), input_gradient=False)
            loss = loss + self._penalty(add_gradients=True)
        gradients = self.gradients()
        xp = self.array_module
        # One sum per gradient: NaN or inf anywhere makes it non-finite.
        extra["gradients"] = sum(g.sum() for g in gradients) if gradients else xp.zeros(())
        return gradients, self._read_back(loss, predictions, y, extra)

    def test_step(self, data) -> dict[str, float]:
        """The logs of a batch ``data = (x, y)`` with dropout off and nothing updated; ``evaluate``
        calls it for every batch."""
        self._require_compiled("test_step")
        x, y = unpack_batch(data, f"model {self.name!r}: test_step")
        y = self.to_model_device(y)
        loss, predictions, extra = self._loss_on_device(x, y, training=False, keep_caches=False)
        return self._read_back(loss + self._penalty(add_gradients=False), predictions, y, extra)

    def _penalty(self, add_gradients: bool):
        """The weights' regularization penalty (0 without regularizers), part of the loss as in Keras;
        with ``add_gradients``, its gradient joins each regularized weight's."""
        penalty = self.array_module.zeros((), dtype=self.dtype)
        for layer in self.layers:
            for key, regularizer in layer.regularizers.items():
                if key in layer.params:  # a bias regularizer on a layer without bias has nothing to do
                    penalty = penalty + regularizer(layer.params[key])
                    if add_gradients:
                        layer.grads[key] = layer.grads[key] + regularizer.gradient(layer.params[key])
        return penalty

    def _loss_on_device(self, x_batch, y, training: bool, keep_caches: bool):
        """The loss (fused with a final sigmoid or softmax when possible) as a 0-d device array, the
        probabilities, and the device scalars still to be checked on the host; ``keep_caches``
        when a backward follows (see ``Model.forward``)."""
        if self.fuse_output:
            z = self.forward_logits(x_batch, training, keep_caches)
            loss = self.logits_loss.value(z, y)
            return loss, self.logits_loss.probabilities(), {}
        predictions = self.forward(x_batch, training, keep_caches)
        extra = {}
        if not self.loss.from_logits:
            extra["probabilities"] = ((predictions >= 0) & (predictions <= 1)).all() | ~self._finite(predictions)
        return self.loss.value(predictions, y), predictions, extra

    def _finite(self, a):
        return self.array_module.isfinite(a).all()

    def _read_back(self, loss, predictions, y, extra: dict) -> dict[str, float]:
        """Loss, metrics and ``extra`` device scalars, brought to the host together."""
        xp = self.array_module
        names = ["loss"] + list(self.metrics) + list(extra)
        # Compared where the predictions live: one scalar per metric comes back, not the whole batch.
        scalars = ([loss] + [xp.mean(function(y, predictions)) for function in self.metric_functions]
                   + list(extra.values()))
        values = backend.to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64) for v in scalars]))
        results = {name: float(value) for name, value in zip(names, values)}
        if results.pop("probabilities", 1.0) == 0.0:
            raise ValueError(f"model {self.name!r}: the model's outputs must be probabilities in [0, 1] for "
                             f"{type(self.loss).__name__}(from_logits=False); use from_logits=True for raw scores")
        return results

    # --- fit ---------------------------------------------------------------------------------------
    def fit(self, x, y=None, batch_size: int = 32, epochs: int = 1, verbose: int = 1, callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, class_weight=None,
            initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_steps: int | None = None, validation_freq: int = 1,
            max_queue_size: int = 10, workers: int = 1, use_multiprocessing: bool = False,
            stop_on_nan: bool = True) -> "History":
        """Train for ``epochs - initial_epoch`` epochs; returns a ``History``.

        Parameters
        ----------
        x : images (N, H, W, C) with labels ``y`` (N, L) in [0, 1], or an iterator of
            ``(x_batch, y_batch)`` with ``len()`` (such as ``ImageDataGenerator.flow(x, y)``), then ``y=None``.
        batch_size, shuffle : used with arrays (a new permutation each epoch, from the seeded generator).
        epochs : the index of the last epoch, plus one (as in Keras, not a count when resuming);
            must exceed ``initial_epoch``.
        verbose : 1 progress bar (a plain line per epoch when the output is not a terminal),
            2 one line per epoch, 0 silent.
        callbacks : a list of ``tinyconv.callbacks.Callback``.
        validation_split : a fraction in [0, 1) of arrays ``x, y`` kept for validation: the last
            samples, taken before any shuffling (as Keras); ignored when ``validation_data`` is given.
        validation_data : ``(x_val, y_val)`` arrays or an iterator, evaluated after each epoch.
        validation_steps : batches per validation (default: all of it); validation_freq : validate
            after every ``validation_freq``-th epoch.
        max_queue_size, workers, use_multiprocessing : Keras 2's options for reading batches in
            parallel, accepted so that its scripts run; tinyconv reads batches in the training process
            (its batches come from arrays in memory, and a thread of their own would compete with
            the training step for the cores).
        initial_epoch : the epoch to start from (the ``epoch`` a checkpoint returns on resume).
        steps_per_epoch : batches per epoch; default ``len`` of the data (one pass).
        stop_on_nan : stop at the first batch whose loss (or gradient) is NaN or inf, keeping the
            weights from before it, and say so (``history.diverged`` tells the caller). With False
            training goes on (``TerminateOnNaN`` can then stop it as in Keras); a non-finite step is
            never applied either way.

        Every argument is checked before anything changes. Ctrl-C or SIGTERM stops at the end of the running
        batch (or after the running validation); a ``TrainingCheckpoint`` callback then saves the run
        and prints how to resume it. ``history.interrupted`` tells whether that happened.
        """
        self._require_compiled("fit")
        owner = f"model {self.name!r}: fit"
        batch_size = arguments.integer(batch_size, "batch_size", owner, low=1)
        epochs = arguments.integer(epochs, "epochs", owner, low=0)
        initial_epoch = arguments.integer(initial_epoch, "initial_epoch", owner, low=0)
        if initial_epoch >= epochs:
            raise ValueError(f"{owner}: initial_epoch ({initial_epoch}) must be below epochs ({epochs}): "
                             "epochs is the index of the last epoch plus one, as in Keras, so nothing would run")
        if steps_per_epoch is not None:
            steps_per_epoch = arguments.integer(steps_per_epoch, "steps_per_epoch", owner, low=1)
        _refuse_class_weight(class_weight, owner)
        if validation_steps is not None:
            validation_steps = arguments.integer(validation_steps, "validation_steps", owner, low=1)
        validation_freq = arguments.integer(validation_freq, "validation_freq", owner, low=1)
        arguments.integer(max_queue_size, "max_queue_size", owner, low=0)
        arguments.integer(workers, "workers", owner, low=0)
        arguments.boolean(use_multiprocessing, "use_multiprocessing", owner)
        shuffle = arguments.boolean(shuffle, "shuffle", owner)
        stop_on_nan = arguments.boolean(stop_on_nan, "stop_on_nan", owner)
        verbose = check_verbose(verbose, owner)
        validation_split = arguments.number(validation_split, "validation_split", owner, low=0, high=1,
                                            high_open=True)
        if validation_split and validation_data is None:
            x, y, validation_data = self._split_off_validation(x, y, validation_split, owner)
        data = self._batches(x, y, batch_size, shuffle, "fit")
        steps = steps_per_epoch or len(data)
        if validation_data is not None:
            validation_data = self._validation_pair(validation_data, batch_size)
        history = History()
        user = list(callbacks or [])
        for callback in user:
            if not isinstance(callback, Callback):
                raise TypeError(f"{owner}: callbacks must be tinyconv.callbacks.Callback "
                                f"instances, got {type(callback).__name__}")
        metrics = self.metrics_names
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "initial_epoch": initial_epoch,
                  "data": data, "callbacks": user,
                  "metrics": metrics + ([f"val_{m}" for m in metrics] if validation_data is not None else [])}
        for callback in user:
            callback.check_params(params)  # e.g. a file name template naming a metric that never comes
        shared = distribution()
        shared.check(data, owner, training=True, custom_step=type(self).train_step is not Trainable.train_step)
        savers = [cb for cb in user if isinstance(cb, TrainingCheckpoint)]
        resumed = [saver.saved_state(epochs) for saver in savers]  # checked here, restored below

        # Checked: from here on, state changes. The user's callbacks run first, so that what they add
        # to an epoch's logs reaches the progress line and History; checkpoints go last, to save the
        # other callbacks' state after their epoch update (as Keras runs History after the others).
        ordered = ([cb for cb in user if not isinstance(cb, TrainingCheckpoint)]
                   + ([ProgressBar(verbose)] if verbose else []) + [history] + savers)
        for callback in ordered:
            callback.set_model(self)
            callback.set_params(params)
        for saver, state in zip(savers, resumed):
            if state is not None:
                initial_epoch = params["initial_epoch"] = saver.restore(state)
        shared.begin(self)
        # Every rank runs the callbacks that decide (their logs are the same everywhere), one writes.
        ordered = [callback for callback in ordered if shared.is_writer or not callback.writes_files]

        self.stop_training = False
        with StopOnSignals() as ctrl_c:
            for callback in ordered:
                callback.on_train_begin()
            try:
                for epoch in range(initial_epoch, epochs):
                    for callback in ordered:
                        callback.on_epoch_begin(epoch)
                    logs, bad_batch = self._train_epoch(data, steps, ordered, ctrl_c, stop_on_nan)
                    if bad_batch is not None:
                        history.diverged = True
                        if shared.is_writer:  # one rank says it
                            message = _divergence_message(self.name, epoch, bad_batch, steps, logs)
                            bad_weight = self._first_non_finite_weight()
                            if bad_weight is not None:  # the update before overflowed, not the loss
                                message += (f" The weights already hold NaN or inf ({bad_weight}): restore the "
                                            "last checkpoint.")
                            print(message, file=sys.stderr, flush=True)
                        break
                    if shared.agree(ctrl_c.requested):  # also when pressed during the last validation
                        history.interrupted = True
                        for callback in ordered:
                            callback.on_interrupt(epoch)
                        break
                    if validation_data is not None and (epoch + 1) % validation_freq == 0:
                        val = self.evaluate(*validation_data, batch_size=batch_size, steps=validation_steps,
                                            return_dict=True)
                        logs.update({f"val_{key}": value for key, value in val.items()})
                    for callback in ordered:  # one dict: what a callback adds, the later ones see
                        callback.on_epoch_end(epoch, logs)
                    if shared.agree(ctrl_c.requested):  # pressed in the validation: the epoch is complete
                        history.interrupted = True
                        for callback in ordered:
                            callback.on_interrupt(epoch)
                        break
                    if self.stop_training:
                        break
            finally:  # close the log file and the progress bar whatever happened
                for callback in ordered:
                    callback.on_train_end()
        return history

    def _train_epoch(self, data, steps: int, callbacks: list, ctrl_c, stop_on_nan: bool):
        """Run ``steps`` training steps; returns the epoch's batch-size-weighted mean logs, and the
        index of the batch whose logs were not finite when ``stop_on_nan`` stopped there (else None)."""
        sums: dict[str, float] = {}
        seen = 0
        logs: dict[str, float] = {}
        shared = distribution()
        for step in range(steps):
            if self.stop_training or shared.agree(ctrl_c.requested):
                break
            # Stopping at a refused batch puts the data back before it too (its position, and the
            # shuffling and augmentation draws that made it): a checkpoint saved now retries it.
            before = (_generator_states(self.layers), data.get_state()) if stop_on_nan and hasattr(data, "get_state") \
                else None
            batch, rows, n = self._next_batch(data, "fit", shared.part)
            with random.global_batch(rows, n):  # n: the whole batch's samples, of which this rank has rows
                results = self.train_step(batch)
            if stop_on_nan and not all(math.isfinite(value) for value in results.values()):
                if before is not None:
                    _set_generator_states(self.layers, before[0])
                    data.set_state(before[1])
                return results, step
            seen += n
            for key, value in results.items():
                sums[key] = sums.get(key, 0.0) + value * n
            logs = {key: total / seen for key, total in sums.items()}
            for callback in callbacks:
                callback.on_train_batch_end(step, dict(logs))
        return logs, None

    def _next_batch(self, data, owner: str, part=random.whole_batch):
        """The next batch as ``(batch, rows, size)``: ``batch`` is ``(x_batch, y_batch)`` (images alone
        for a model that needs no labels), the ``rows = part(size)`` of a batch of ``size`` samples
        (all of them in one process). Batches of an iterator other than fit's own are checked here
        (arrays were checked once, up front)."""
        if isinstance(data, ArrayIterator):
            return data.next_part(part)
        if hasattr(data, "next_part"):  # ImageDataGenerator's iterators
            batch, rows, size = data.next_part(part)
        else:  # a user's iterator: one process has all of each batch
            batch = next(data)
            size = len(batch[0] if isinstance(batch, tuple) else batch)
            rows = part(size)
        return self._checked_batch(batch, owner), rows, size

    def _checked_batch(self, batch, owner: str):
        if not self.needs_labels:
            images = batch[0] if isinstance(batch, tuple) else batch
            self._check_images(images, owner)
            return images
        if not (isinstance(batch, tuple) and len(batch) == 2):
            raise TypeError(f"model {self.name!r}: {owner}: each batch of the iterator must be a pair "
                            f"(x_batch, y_batch), got {type(batch).__name__}"
                            + (f" of shape {tuple(batch.shape)}" if hasattr(batch, "shape") else ""))
        self._check_batch(*batch, owner)
        return batch

    # --- evaluate and predict -------------------------------------------------------------------------
    def evaluate(self, x, y=None, batch_size: int = 32, verbose: int = 0, steps: int | None = None,
                 return_dict: bool = False):
        """Loss (and metrics) over a whole dataset, batch by batch, dropout off.

        Returns the loss alone when compiled without metrics, else ``[loss, accuracy]``
        (or ``{"loss": ..., "accuracy": ...}`` with ``return_dict=True``), means weighted by batch size.
        ``steps``: the first ``steps`` batches only. ``verbose=2`` prints Keras's one line at the end
        (``verbose=1`` a progress bar in a terminal, and then that line). Weights holding NaN or inf
        are refused (the model diverged).
        """
        self._require_compiled("evaluate")
        owner = f"model {self.name!r}: evaluate"
        batch_size = arguments.integer(batch_size, "batch_size", owner, low=1)
        verbose = check_verbose(verbose, owner)
        data = self._batches(x, y, batch_size, False, "evaluate")
        if steps is not None:
            steps = min(arguments.integer(steps, "steps", owner, low=1), len(data))
        self._check_finite_weights("evaluate")
        shared = distribution()
        shared.check(data, owner)
        names = self.metrics_names  # the keys of test_step's logs
        sums = np.zeros(len(names) + 1)  # weighted by batch size; the last: the samples seen
        bad_batch = None
        started = time.perf_counter()
        for batch in progress(range(steps or len(data)), verbose if shared.is_writer else 0, "evaluate"):
            (x_batch, y_batch), _, _ = self._next_batch(data, "evaluate", shared.part)
            if len(x_batch) == 0:  # a batch smaller than the ranks: this one has no part of it
                continue
            logs = self.test_step((x_batch, y_batch))
            sums += [*(logs[name] * len(x_batch) for name in names), len(x_batch)]
            if bad_batch is None and not math.isfinite(sums[0]):
                bad_batch = batch
        sums = shared.sum_over_ranks(sums)  # data-parallel: each rank evaluated its share of every batch
        results = {name: float(total / sums[-1]) for name, total in zip(names, sums)}
        if not math.isfinite(results["loss"]):  # no accuracy either: it would be computed from NaN outputs
            results = dict.fromkeys(results, math.nan)
            where = f"from batch {bad_batch + 1} on" if bad_batch is not None else "in another rank's share"
            warnings.warn(f"model {self.name!r}: evaluate: the outputs are NaN or inf {where}, although the "
                          "weights are finite: they are too large (the training diverged?)",
                          RuntimeWarning, stacklevel=2)
        if verbose and shared.is_writer:
            print(summary_line(steps or len(data), time.perf_counter() - started, results), flush=True)
        if return_dict:
            return results
        return results["loss"] if len(results) == 1 else list(results.values())

    def predict(self, x, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Model outputs for images ``x`` (N, H, W, C), as a NumPy array (N, *output_shape).

        Weights holding NaN or inf are refused (the model diverged)."""
        owner = f"model {self.name!r}: predict"
        if isinstance(x, (list, tuple)) or not hasattr(x, "ndim"):
            raise TypeError(f"{owner} takes a NumPy array of images (N, H, W, C), got {type(x).__name__}"
                            + (" (stack a list of images with np.stack)" if isinstance(x, (list, tuple)) else ""))
        batch_size = arguments.integer(batch_size, "batch_size", owner, low=1)
        verbose = check_verbose(verbose, owner)
        self._check_images(x, "predict")
        self._check_finite_weights("predict")
        outputs = None
        for start in progress(range(0, len(x), batch_size), verbose, "predict"):
            batch = backend.to_numpy(self.forward(x[start:start + batch_size], training=False,
                                                   keep_caches=False))
            if outputs is None:
                outputs = np.empty((len(x), *batch.shape[1:]), dtype=batch.dtype)
            outputs[start:start + len(batch)] = batch
        return outputs

    # --- Keras 2's generator methods (Keras 3 removed them; fit, evaluate and predict take iterators) ---
    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, validation_freq=1, class_weight=None,
                      max_queue_size=10, workers=1, use_multiprocessing=False, shuffle=True, initial_epoch=0):
        """Deprecated, as in Keras 2: ``fit(generator, ...)``."""
        _deprecated("fit_generator", "fit")
        _refuse_class_weight(class_weight, f"model {self.name!r}: fit_generator")
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose,
                        callbacks=callbacks, validation_data=validation_data, validation_steps=validation_steps,
                        validation_freq=validation_freq, max_queue_size=max_queue_size, workers=workers,
                        use_multiprocessing=use_multiprocessing, shuffle=shuffle, initial_epoch=initial_epoch)

    def evaluate_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                           use_multiprocessing=False, verbose=0):
        """Deprecated, as in Keras 2: ``evaluate(generator, steps=...)``."""
        _deprecated("evaluate_generator", "evaluate")
        return self.evaluate(generator, steps=steps, verbose=verbose)

    def predict_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                          use_multiprocessing=False, verbose=0):
        """Deprecated, as in Keras 2: the outputs for the images of the first ``steps`` batches (default
        one pass, ``len(generator)``), batches of images or of ``(images, labels)``."""
        _deprecated("predict_generator", "predict")
        owner = f"model {self.name!r}: predict_generator"
        if not (hasattr(generator, "__next__") and hasattr(generator, "__len__")):
            raise TypeError(f"{owner}: expected an iterator of batches with len(), such as "
                            f"ImageDataGenerator.flow(x, shuffle=False), got {type(generator).__name__}")
        steps = len(generator) if steps is None else arguments.integer(steps, "steps", owner, low=1)
        outputs = []
        for _ in range(steps):
            batch = next(generator)
            outputs.append(self.predict(batch[0] if isinstance(batch, tuple) else batch, verbose=verbose))
        return np.concatenate(outputs)

    def _check_finite_weights(self, owner: str) -> None:
        """Refuse to compute with NaN or inf weights."""
        bad = self._first_non_finite_weight()
        if bad is not None:
            raise ValueError(f"model {self.name!r}: {owner}: the weights hold NaN or inf (first in {bad}): the "
                             "training diverged; load weights saved before it (a ModelCheckpoint or "
                             "TrainingCheckpoint file)")

    def _first_non_finite_weight(self) -> str | None:
        """``"layer <i> '<name>', '<param>'"`` of the first parameter holding NaN or inf, else None
        (one transfer for all of them)."""
        located = [(i, layer, key) for i, layer in enumerate(self.graph_layers) for key in layer.weights]
        if not located:
            return None
        xp = self.array_module
        flags = backend.to_numpy(xp.stack([self._finite(layer.weights[key]) for _, layer, key in located]))
        if flags.all():
            return None
        i, layer, key = located[int(np.flatnonzero(~flags)[0])]
        return f"layer {i} {layer.name!r}, {key!r}"

    # --- input checks ----------------------------------------------------------------------------------
    def _batches(self, x, y, batch_size: int, shuffle: bool, owner: str):
        """Arrays become an ``ArrayIterator``; an iterator of batches is used as it is."""
        if isinstance(x, (list, tuple)):
            raise TypeError(f"model {self.name!r}: {owner} takes images as one NumPy array (N, H, W, C) with "
                            f"labels y, or an iterator of (x_batch, y_batch) batches; got a {type(x).__name__} "
                            f"of {len(x)} items (images in a list: stack them with np.stack(images))")
        if hasattr(x, "ndim"):
            if y is None and not self.needs_labels:
                self._check_images(x, owner)
                return ArrayIterator(x, None, batch_size, shuffle)
            if y is None:
                raise ValueError(f"model {self.name!r}: {owner} got images but no labels y")
            self._check_images(x, owner)
            self._check_labels(y, len(x), owner)
            return ArrayIterator(x, y, batch_size, shuffle)
        if y is not None:
            raise ValueError(f"model {self.name!r}: {owner} got an iterator of (x, y) batches and also y; "
                             "the iterator brings its own labels, pass y=None")
        if not (hasattr(x, "__next__") and hasattr(x, "__len__")):
            raise TypeError(f"model {self.name!r}: {owner} expected arrays (x, y) or an iterator of "
                            f"(x_batch, y_batch) with len(), such as ImageDataGenerator.flow(...); "
                            f"got {type(x).__name__}")
        if getattr(x, "y", False) is None and self.needs_labels:  # flow(x) without y yields images alone
            raise ValueError(f"model {self.name!r}: {owner} got an iterator without labels "
                             f"({type(x).__name__} with y=None); pass them: flow(x, y)")
        return x

    def _split_off_validation(self, x, y, fraction: float, owner: str):
        """``x, y`` without their last ``fraction``, and that part as ``validation_data`` (Keras's rule:
        the first ``int(N * (1 - fraction))`` samples train)."""
        if not (hasattr(x, "ndim") and hasattr(y, "ndim")):
            raise ValueError(f"{owner}: validation_split needs arrays x and y (it splits them); for an iterator "
                             f"such as ImageDataGenerator.flow pass validation_data=, or "
                             f"ImageDataGenerator(validation_split=...) with flow(..., subset=)")
        keep = int(len(x) * (1 - fraction))
        if keep == 0 or keep == len(x):
            raise ValueError(f"{owner}: validation_split={fraction} of {len(x)} samples leaves "
                             f"{'no training' if keep == 0 else 'no validation'} samples")
        return x[:keep], y[:keep], (x[keep:], y[keep:])

    def _validation_pair(self, validation_data, batch_size: int):
        if isinstance(validation_data, tuple) and len(validation_data) == 2:
            x_val, y_val = validation_data
            self._batches(x_val, y_val, batch_size, False, "fit (validation_data)")  # fail before training
            return x_val, y_val
        self._batches(validation_data, None, batch_size, False, "fit (validation_data)")
        return (validation_data,)

    def _check_images(self, x, owner: str) -> None:
        """Images (N, H, W, C) for a model that takes images; for one that takes vectors (N, D) or other
        arrays (Keras's multilayer perceptrons), arrays of its input shape."""
        where = f"model {self.name!r}: {owner}"
        expected = self.image_shape()
        check_images(x, where, rank=None if expected is None else 1 + len(expected))
        if expected is not None and tuple(x.shape[1:]) != tuple(expected):
            noun = "images" if len(expected) == 3 else "inputs"
            raise ValueError(f"{where}: the model expects {noun} of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")

    def _check_labels(self, y, n: int, owner: str) -> None:
        """The loss says what its labels are (rows in [0, 1], or class indices)."""
        expected = self.graph_layers[-1].output_shape if self.graph_layers else None
        self.loss.check_targets(y, n, expected, f"model {self.name!r}: {owner}")

    def _check_batch(self, x_batch, y_batch, owner: str) -> None:
        self._check_images(x_batch, owner)
        self._check_labels(y_batch, len(x_batch), owner)


class History(Callback):
    """``history.history``: a dict of per-epoch lists (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``); ``history.epoch``: the epoch indices; ``history.interrupted``: Ctrl-C happened;
    ``history.diverged``: fit stopped at a non-finite loss (``stop_on_nan``)."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.interrupted = False
        self.diverged = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _deprecated(old: str, new: str) -> None:
    """Keras 2's warning; Python shows it once per calling line."""
    warnings.warn(f"Model.{old} is deprecated and will be removed in a future version; use Model.{new}, "
                  "which takes generators", UserWarning, stacklevel=3)


def _refuse_class_weight(class_weight, owner: str) -> None:
    if class_weight is not None:
        raise ValueError(f"{owner}: class_weight is not supported; for rare labels weight them in a loss of your "
                         "own (a subclass of tinyconv.losses.Loss), or resample the training set")


def unpack_batch(data, owner: str) -> tuple:
    """``(x, y)`` from a batch, or an error that says what a batch must be."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{owner}: expected a batch (x, y) of images and labels, got {type(data).__name__}"
                        + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    return data[0], data[1]


def refused_loss(loss: float) -> float:
    """What the logs of a refused step say: the loss when it is the non-finite value, else NaN (only
    the gradients overflowed), so that fit sees the refusal in the logs alone."""
    return loss if not math.isfinite(loss) else math.nan


def keep_step_state(layers):
    """Remember what a step changes before its optimizer update (BatchNorm's moving statistics move
    in the forward pass; dropout draws from the generators); returns the function that puts it back,
    for a step that is refused."""
    moving = [value.copy() for layer in layers for value in layer.non_trainable_params.values()]
    draws = _generator_states(layers)

    def put_back() -> None:
        for value, kept in zip((v for layer in layers for v in layer.non_trainable_params.values()), moving):
            value[...] = kept
        _set_generator_states(layers, draws)

    return put_back


def _generator_states(layers) -> tuple:
    """Where every random generator stands: tinyconv's own and those of layers seeded on their own."""
    return random.get_state(), {name: g.bit_generator.state for name, g in random.layer_generators(layers).items()}


def _set_generator_states(layers, states: tuple) -> None:
    shared, own = states
    for purpose, state in shared["generators"].items():  # in place: the seed has not changed
        random.generator(purpose).bit_generator.state = state
    for name, generator in random.layer_generators(layers).items():
        generator.bit_generator.state = own[name]


def _check_loss_pitfalls(last, loss, owner: str) -> None:
    """The mistakes Keras warns about, caught at compile: a softmax over one unit (its output is 1
    whatever the input, so nothing can train) is refused; a loss told ``from_logits=True`` after a
    layer that already applies its sigmoid or softmax is warned about."""
    width = last.output_shape[-1] if last.output_shape else None  # unknown until a Sequential is built
    if last.ends_in_softmax and width == 1:
        raise ValueError(f"{owner}: layer {last.name!r} ends in a softmax over 1 unit, which outputs 1 whatever "
                         f"its input, so {type(loss).__name__} cannot train it; for one yes/no label use "
                         "Dense(1, activation='sigmoid') with binary_crossentropy")
    applied = "sigmoid" if last.ends_in_sigmoid else "softmax" if last.ends_in_softmax else None
    if loss.from_logits and applied:
        warnings.warn(f"{owner}: {type(loss).__name__}(from_logits=True) expects raw scores, but layer "
                      f"{last.name!r} already applies a {applied}, so the loss would apply a second one; drop "
                      f"the {applied} from the layer, or use from_logits=False", UserWarning, stacklevel=3)


def _divergence_message(name: str, epoch: int, batch: int, steps: int, logs: dict) -> str:
    key, value = next((k, v) for k, v in logs.items() if not math.isfinite(v))
    return (f"model {name!r}: the {key.replace('_', ' ')} became {value} at epoch {epoch + 1}, batch {batch + 1} of {steps}; "
            "training stopped and the weights are those from before that batch. Likely causes: a learning "
            "rate too high (try one 10 times smaller), or inputs far from unit scale (standardise the "
            "images, e.g. ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)). "
            "fit(..., stop_on_nan=False) trains on (TerminateOnNaN can then stop it).")
