"""Callbacks: code that ``fit`` runs at fixed points of the training loop (Keras names and defaults).

The loop calls, in this order::

    on_train_begin
    for each epoch:   on_epoch_begin, (on_train_batch_end after every batch), on_epoch_end
    on_interrupt      (only after Ctrl-C: at the end of the batch that was running, or after the
                      epoch whose validation was running)
    on_train_end

``logs`` are dicts of floats: ``loss`` and ``accuracy`` (running means over the epoch's batches so
far, weighted by batch size), and at the end of an epoch also ``val_loss`` and ``val_accuracy``.
A callback stops training by setting ``self.model.stop_training = True``. ``get_state`` and
``set_state`` carry a callback's memory through a training checkpoint, so that a resumed run
behaves as if it had never stopped (Keras forgets EarlyStopping's counters on resume).
"""
from __future__ import annotations

import csv
import io
import math
import os
import string
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from .. import arguments
from ..storage import atomic
from . import checkpoint


class Callback:
    """Base class: every hook does nothing; ``self.model`` and ``self.params`` are set by ``fit``.

    ``params`` holds ``epochs``, ``steps``, ``verbose``, ``initial_epoch``, ``data`` (the training
    iterator), ``callbacks`` (all callbacks of the run, in order) and ``metrics`` (the keys of the
    epoch logs: ``loss``, the metrics, and their ``val_`` versions when there is validation data).

    ``writes_files``: a callback that writes files or prints (a log, a checkpoint, progress) runs on
    one rank only in data-parallel training; the others (early stopping, learning-rate schedules)
    run on every rank, where they see the same logs and so decide alike.
    """

    writes_files = False

    def __init__(self):
        self._model = None
        self.params: dict = {}

    @property
    def model(self):
        """The model ``fit`` set; outside ``fit`` (a hook called by hand) an error says so."""
        if self._model is None:
            raise RuntimeError(f"{type(self).__name__}: no model yet: callbacks run inside "
                               "model.fit(..., callbacks=[...]), which calls set_model first")
        return self._model

    def set_model(self, model) -> None:
        self._model = model

    def require_started(self, ready: bool, hook: str) -> None:
        """A hook that needs what ``on_train_begin`` prepared, called before it, names the step."""
        if not ready:
            raise RuntimeError(f"{type(self).__name__}: {hook} before on_train_begin; callbacks run inside "
                               "model.fit(..., callbacks=[...]), which calls the hooks in order")

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_interrupt(self, epoch: int) -> None: ...

    def check_params(self, params: dict) -> None:
        """Called by ``fit`` before anything changes: raise here for settings that cannot work with
        this run (``params["metrics"]`` lists the log keys each epoch will have)."""

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


def monitor_op_for(monitor: str, mode: str, owner: str):
    """``np.less`` when smaller is better, ``np.greater`` when larger is; ``auto`` decides by the name."""
    arguments.text(monitor, "monitor", owner)
    arguments.one_of(mode, "mode", owner, ("auto", "min", "max"))
    if mode == "auto":
        mode = "max" if monitor.endswith(("acc", "accuracy", "auc")) else "min"
    return np.less if mode == "min" else np.greater


def check_monitor(monitor: str, params: dict, owner: str) -> None:
    """A monitored value that the run's logs will never hold is a mistake found before training."""
    keys = params.get("metrics")
    if keys is not None and monitor not in keys:
        hint = " (val_ values need validation_data or validation_split)" if monitor.startswith("val_") else ""
        raise ValueError(f"{owner}: monitor {monitor!r} will not be in this run's logs {keys}{hint}; Keras would "
                         "train on and only warn at each epoch's end, with the callback doing nothing: monitor "
                         "one of the logged values instead")


def diverged(model, logs: dict | None) -> bool:
    """True when the epoch's loss or any weight is NaN or inf: such a state is never saved."""
    loss = (logs or {}).get("loss", 0.0)
    return not math.isfinite(loss) or not all(bool(np.isfinite(w).all()) for w in model.get_weights())


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when its value beats the best so far by more than ``min_delta``. Each epoch
    without improvement adds one to ``wait``; training stops at the end of the epoch where ``wait``
    reaches ``patience``. With ``restore_best_weights`` the model gets the best epoch's weights back
    when training ends. Example: ``val_loss`` = 1.0, 0.9, 0.95, 0.92, 0.91 with patience 3 stops after
    the fifth epoch (index 4): the best is 0.9 at index 1, then three epochs do not beat it.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", restore_best_weights: bool = False):
        super().__init__()
        self.monitor_op = monitor_op_for(monitor, mode, "EarlyStopping")
        self.monitor = monitor
        self.min_delta = abs(arguments.number(min_delta, "min_delta", "EarlyStopping"))  # Keras takes |min_delta|
        self.patience = arguments.integer(patience, "patience", "EarlyStopping", low=0)
        self.verbose = arguments.integer(verbose, "verbose", "EarlyStopping", low=0)
        self.restore_best_weights = arguments.boolean(restore_best_weights, "restore_best_weights", "EarlyStopping")
        self._resumed = False
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf if self.monitor_op is np.less else -np.inf
        self.best_epoch = 0
        self.best_weights = None

    def _is_improvement(self, value: float) -> bool:
        signed_delta = -self.min_delta if self.monitor_op is np.less else self.min_delta
        return bool(self.monitor_op(value - signed_delta, self.best))

    def check_params(self, params):
        check_monitor(self.monitor, params, "EarlyStopping")

    def on_train_begin(self, logs=None):
        if not self._resumed:  # a resumed run keeps the counters it had
            self._reset()
        self._resumed = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            print(f"EarlyStopping: metric {self.monitor!r} is not available; available: {sorted(logs or {})}",
                  file=sys.stderr)
            return
        self.wait += 1
        if self._is_improvement(value):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping "
                  f"(best {self.monitor} {self.best:.4f} at epoch {self.best_epoch + 1})")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def set_state(self, state: dict) -> None:
        self.wait, self.best = int(state["wait"]), float(state["best"])
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = state["best_weights"]
        self._resumed = True


class CSVLogger(Callback):
    """One CSV row per epoch: header ``epoch,<sorted metric names>``, ``epoch`` counted from 0.

    Each row is flushed when written. ``append=True`` continues an existing file; a resumed run
    (restored from a checkpoint) always appends, first dropping rows of epochs it will redo.
    """

    writes_files = True

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename = arguments.path(filename, "filename", "CSVLogger")
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"CSVLogger: separator must be one character other than a quote or a line end, "
                             f"got {arguments.describe(separator)}")
        self.separator = separator
        self.append = arguments.boolean(append, "append", "CSVLogger")
        self.keys: list[str] | None = None
        self.file = None
        self._resumed = False

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(folder, exist_ok=True)
        if self.append and os.path.exists(self.filename):
            if self._resumed:
                self._drop_rows_from(self.params.get("initial_epoch", 0))
                self._resumed = False
            with open(self.filename, newline="") as f:
                header = next((row for row in csv.reader(f, delimiter=self.separator) if _epoch_of(row) is None
                               and row and not row[0].lstrip().startswith("#")), None)
            self.keys = header[1:] if header else None
            self.file = open(self.filename, "a", newline="")
        else:
            self.keys = None
            self.file = open(self.filename, "w", newline="")

    def _drop_rows_from(self, epoch: int) -> None:
        """Keep every row but those of epochs from ``epoch`` on (a crash may have left some); lines that
        are not epoch rows (the header, a comment or a blank line added by hand) stay as they are."""
        with open(self.filename, newline="") as f:
            rows = list(csv.reader(f, delimiter=self.separator))
        kept = [row for row in rows if _epoch_of(row) is None or _epoch_of(row) < epoch]
        if len(kept) != len(rows):
            text = io.StringIO(newline="")
            csv.writer(text, delimiter=self.separator).writerows(kept)
            atomic.write_file(self.filename, lambda f: f.write(text.getvalue().encode()), "CSVLogger")

    def on_epoch_end(self, epoch, logs=None):
        self.require_started(self.file is not None, "on_epoch_end")
        logs = logs or {}
        writer = csv.writer(self.file, delimiter=self.separator)
        if self.keys is None:
            self.keys = sorted(logs)
            writer.writerow(["epoch", *self.keys])
        writer.writerow([epoch, *(logs.get(key, "NA") for key in self.keys)])
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
            self.file = None

    def set_state(self, state: dict) -> None:
        self.append = self._resumed = True  # a resumed run continues the log


class GradientNormLogger(CSVLogger):
    """Watch the gradients: per layer and epoch, the gradient norm and the update/weight ratio.

    After every training batch it measures, for each layer with trainable weights (all of them
    taken together as one vector),

    - ``gradient_norm``: ``||dL/dw||``, the size of the gradient that reached the layer;
    - ``update_ratio``: ``||w_t - w_(t-1)|| / ||w_(t-1)||``, how much one optimizer step changed it
      (CS231n's rule of thumb: around 1e-3; far below, the layer hardly learns);
    - ``weight_norm``: ``||w||``.

    At the end of each epoch it writes their means over the epoch's batches, one CSV row per layer:
    ``epoch,layer,depth,gradient_norm,update_ratio,weight_norm`` (``depth``: the layer's position
    among the layers with weights, from the input). Gradient norms that shrink layer after layer
    towards the input are vanishing gradients; ``tinyconv.plots.plot_gradient_norms`` draws them.

    Costs one norm per weight array per batch and a copy of the weights, kept for the next ratio.
    A resumed run appends, as ``CSVLogger`` does; ``rows`` holds what this run measured.
    """

    COLUMNS = ("layer", "depth", "gradient_norm", "update_ratio", "weight_norm")

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__(filename, separator, append)
        self.rows: list[dict] = []
        self.layers = None  # those with weights, from on_train_begin

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.layers = [layer for layer in self.model.layers if layer.params]
        self.previous = None

    def on_epoch_begin(self, epoch, logs=None):
        self.require_started(self.layers is not None, "on_epoch_begin")
        self.sums = {layer.name: np.zeros(3) for layer in self.layers}  # gradient, ratio, weight norms
        self.ratio_batches = self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.require_started(self.layers is not None, "on_train_batch_end")
        current = []
        for layer in self.layers:
            weights = list(layer.params.values())
            sums = self.sums[layer.name]
            sums[0] += _norm(layer.grads.values())
            sums[2] += _norm(weights)
            current.append([w.copy() for w in weights])
        if self.previous is not None:
            for layer, before, after in zip(self.layers, self.previous, current):
                self.sums[layer.name][1] += _norm(a - b for a, b in zip(after, before)) / max(_norm(before), 1e-30)
            self.ratio_batches += 1
        self.previous = current
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        writer = csv.writer(self.file, delimiter=self.separator)
        if self.keys is None:
            self.keys = list(self.COLUMNS)
            writer.writerow(["epoch", *self.keys])
        for depth, layer in enumerate(self.layers):
            gradient, ratio, weight = self.sums[layer.name]
            row = {"epoch": epoch, "layer": layer.name, "depth": depth,
                   "gradient_norm": gradient / max(self.batches, 1),
                   "update_ratio": ratio / self.ratio_batches if self.ratio_batches else math.nan,
                   "weight_norm": weight / max(self.batches, 1)}
            self.rows.append(row)
            writer.writerow([row[key] for key in ("epoch", *self.keys)])
        self.file.flush()


def read_csv_log(path: str | os.PathLike, separator: str = ",") -> dict[str, list[float]]:
    """A ``CSVLogger`` file as per-column lists of its epochs (a resumed run's included); lines added
    by hand (comments, blank lines) are skipped."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader((line for line in f if line.strip() and not line.lstrip().startswith("#")),
                                   delimiter=separator))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {}) if key != "epoch"}


def _norm(arrays) -> float:
    """The Euclidean norm of several arrays taken together as one vector."""
    return math.sqrt(sum(float((a.astype(np.float64, copy=False) ** 2).sum()) for a in arrays))


def _epoch_of(row: list[str]) -> int | None:
    """The epoch of a CSV log row, None for any other line."""
    try:
        return int(row[0])
    except (IndexError, ValueError):
        return None


class ModelCheckpoint(Callback):
    """Save the model after each epoch, or only when ``monitor`` improves; the file name decides what,
    as in Keras 3: ``.keras`` the whole model (``model.save``), ``.weights.h5`` the weights in Keras's
    layout, ``.npz`` the weights in tinyconv's (``model.save_weights``).

    ``filepath`` may hold format fields: ``"weights-{epoch:02d}-{val_loss:.3f}.npz"`` (``epoch``
    counted from 1, as Keras names the files). A diverged epoch (NaN or inf in the loss or the
    weights) is never written, so the last good file stays in place.
    """

    writes_files = True

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq="epoch", initial_value_threshold: float | None = None):
        super().__init__()
        self.filepath = arguments.path(filepath, "filepath", "ModelCheckpoint")
        self.save_weights_only = arguments.boolean(save_weights_only, "save_weights_only", "ModelCheckpoint")
        if self.filepath.endswith(".keras") and self.save_weights_only:
            raise ValueError(f"ModelCheckpoint: {self.filepath!r} names a whole model (.keras) but "
                             "save_weights_only=True; name the file '*.weights.h5' (or .npz) for weights alone")
        if self.filepath.endswith((".h5", ".hdf5")) and not self.filepath.endswith(".weights.h5"):
            raise ValueError(f"ModelCheckpoint: {self.filepath!r}: Keras 3 writes '*.keras' (the whole model) or "
                             "'*.weights.h5' (weights); Keras 2's .h5 files are not written (tinyconv's own weights "
                             "files are .npz)")
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint: save_freq={save_freq!r}: tinyconv saves at the end of epochs "
                             "('epoch'); for batch-level safety use TrainingCheckpoint, which also saves on Ctrl-C")
        try:
            list(string.Formatter().parse(self.filepath))
        except ValueError as error:
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} is not a valid format string "
                             f"({error}); write literal braces as {{{{ and }}}}") from None
        self.monitor_op = monitor_op_for(monitor, mode, "ModelCheckpoint")
        self.monitor = monitor
        self.verbose = arguments.integer(verbose, "verbose", "ModelCheckpoint", low=0)
        self.save_best_only = arguments.boolean(save_best_only, "save_best_only", "ModelCheckpoint")
        self.best = np.inf if self.monitor_op is np.less else -np.inf
        if initial_value_threshold is not None:  # Keras's: only a value better than this is saved
            self.best = arguments.number(initial_value_threshold, "initial_value_threshold", "ModelCheckpoint")

    def check_params(self, params):
        if self.save_best_only:
            check_monitor(self.monitor, params, "ModelCheckpoint")
        keys = params.get("metrics", [])
        try:  # with stand-in values: a field the logs will never have fails now, not after an epoch
            self.filepath.format(epoch=1, **{key: 0.5 for key in keys})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: the file name {self.filepath!r} cannot be filled ({exc!r}); "
                             f"its fields can be 'epoch' and this run's logs {keys}") from exc

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                print(f"ModelCheckpoint: metric {self.monitor!r} is not available; skipping", file=sys.stderr)
                return
            if not self.monitor_op(value, self.best):
                return
            self.best = float(value)
        if diverged(self.model, logs):
            print(f"ModelCheckpoint: epoch {epoch + 1} diverged (NaN or inf); not saving {path}", file=sys.stderr)
            return
        if path.endswith(".keras"):
            self.model.save(path)
        else:
            self.model.save_weights(path)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: saved {'the model' if path.endswith('.keras') else 'weights'} to {path}")

    def get_state(self) -> dict:
        return {"best": self.best}

    def set_state(self, state: dict) -> None:
        self.best = float(state["best"])


class TerminateOnNaN(Callback):
    """Stop at the end of the first batch whose loss is NaN or inf (the run has diverged)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"TerminateOnNaN: epoch {self.epoch + 1}, batch {batch + 1}: the loss is {loss}; the training "
                  "has diverged (try a smaller learning rate). Stopping; checkpoints of earlier epochs "
                  "are kept as they were.", file=sys.stderr)
            self.model.stop_training = True


class TrainingCheckpoint(Callback):
    """Write a full training checkpoint (``tinyconv.checkpoint``) after every epoch, and on Ctrl-C.

    The state at the start of each epoch is kept in memory; after Ctrl-C (which ``fit`` turns into
    a stop at the end of the running batch) it is written, so that resuming re-runs the interrupted
    epoch from its start and ends bit for bit where an uninterrupted run would. Nothing is written
    once the weights hold NaN or inf.

    With ``restore=True`` it is also Keras's ``BackupAndRestore``: when ``filepath`` exists, ``fit``
    resumes from it before its first epoch (the model, its optimizer, the other callbacks, the
    generators and the data, whether an iterator or the batches ``fit`` draws from arrays), starting
    at the epoch after the last one saved, whatever ``initial_epoch`` says.

    Parameters
    ----------
    filepath : the checkpoint file (``.npz``), overwritten atomically each time.
    resume_command : printed after Ctrl-C, e.g. ``"python examples/train_cells.py --resume runs/x"``.
    restore : resume from ``filepath`` when it exists (a missing file starts the run afresh).
    """

    writes_files = True

    def __init__(self, filepath: str | os.PathLike, resume_command: str | None = None, restore: bool = False):
        super().__init__()
        self.filepath = arguments.path(filepath, "filepath", "TrainingCheckpoint")
        if resume_command is not None:
            arguments.text(resume_command, "resume_command", "TrainingCheckpoint")
        self.resume_command = resume_command
        self.restore_from_file = arguments.boolean(restore, "restore", "TrainingCheckpoint")
        self.resume_state = None  # what Ctrl-C writes: the state at the start of the running epoch

    def saved_state(self, epochs: int) -> dict | None:
        """The state ``fit`` resumes from (``restore=True`` and the file exists), read and checked
        against ``epochs`` before ``fit`` changes anything; None to start afresh."""
        if not self.restore_from_file or not os.path.exists(self.filepath):
            return None
        state = checkpoint.read(self.filepath)
        if state.get("epoch", 0) >= epochs:
            raise ValueError(f"TrainingCheckpoint: {self.filepath} holds {state['epoch']} finished epochs and "
                             f"fit was asked for epochs={epochs} (the last epoch, not a count): pass epochs "
                             f"above {state['epoch']} to train longer")
        return state

    def restore(self, state: dict) -> int:
        """Put ``state`` back into the model, the run's callbacks and its data; returns the finished
        epochs. Everything is checked first (``checkpoint.restore``)."""
        done = checkpoint.restore(state, self.model, self.params.get("callbacks", ()), self.params.get("data"),
                                  source=self.filepath)
        print(f"Resuming after epoch {done} of {self.params['epochs']} from {self.filepath}")
        return done

    def _capture(self, epoch: int) -> dict:
        return checkpoint.capture(self.model, epoch, self.params.get("callbacks", ()), self.params.get("data"))

    def on_epoch_begin(self, epoch, logs=None):
        self.resume_state = self._capture(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if diverged(self.model, logs):
            print(f"TrainingCheckpoint: epoch {epoch + 1} diverged; keeping {self.filepath} as it was",
                  file=sys.stderr)
            return
        self.resume_state = self._capture(epoch + 1)
        checkpoint.write(self.filepath, self.resume_state)

    def on_interrupt(self, epoch):
        """``epoch``: the index of the epoch that was running. Ctrl-C during its validation lets the
        epoch finish and be saved; otherwise the state at its start is written."""
        if self.resume_state is None:
            return
        done = self.resume_state["epoch"]
        checkpoint.write(self.filepath, self.resume_state)
        where = f"during epoch {epoch + 1}" if done == epoch else f"after epoch {done}"
        print(f"\nInterrupted {where}. Saved the state after epoch {done} to {self.filepath}.")
        if self.resume_command:
            print(f"Resume with:\n    {self.resume_command}")
        else:
            print(f"Resume with model.fit(..., callbacks=[..., TrainingCheckpoint({self.filepath!r}, "
                  "restore=True)]).")


class ProgressBar(Callback):
    """``verbose=1``: a tqdm bar per epoch with the running loss and accuracy; ``verbose=2``: one line
    per epoch; ``verbose=0``: silence. ``fit`` adds it for you.

    A bar redraws itself with carriage returns, which a log file or a CI log keeps as hundreds of
    lines per epoch: when the output is not a terminal, ``verbose=1`` writes the one line instead."""

    writes_files = True

    def __init__(self, verbose: int = 1, file=None):
        super().__init__()
        self.verbose = arguments.integer(verbose, "verbose", "ProgressBar", low=0, high=2)
        if file is not None and not hasattr(file, "write"):
            raise TypeError(f"ProgressBar: file must be a text stream or None, got {arguments.describe(file)}")
        self.file = file
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.require_started("epochs" in self.params, "on_epoch_begin")
        self.start = time.perf_counter()
        title = f"Epoch {epoch + 1}/{self.params['epochs']}"
        if self.verbose == 1 and is_terminal(self.file or sys.stdout):
            self.bar = tqdm(total=self.params["steps"], desc=title, unit="batch", leave=True,
                            file=self.file or sys.stdout, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        text = format_logs(logs)
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.close()
            self.bar = None
        elif self.verbose:
            seconds = time.perf_counter() - self.start
            print(f"Epoch {epoch + 1}/{self.params['epochs']} - {seconds:.1f}s - {text}",
                  file=self.file or sys.stdout, flush=True)

    def on_train_end(self, logs=None):
        if self.bar is not None:  # interrupted mid-epoch
            self.bar.close()
            self.bar = None


def is_terminal(stream) -> bool:
    """True for an interactive terminal (where progress bars belong), False for files and pipes."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def format_logs(logs: dict | None) -> str:
    return " - ".join(f"{key}: {value:.4f}" for key, value in (logs or {}).items())
