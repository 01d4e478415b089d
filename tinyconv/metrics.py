"""Keras's accuracy metrics (``keras.metrics`` -> ``tinyconv.metrics``), for ``compile(metrics=...)``.

Each function takes ``(y_true, y_pred)`` and returns one value per sample, on the predictions'
device (NumPy or CuPy); a batch's metric is their mean, an epoch's the batch-size-weighted mean:

- ``binary_accuracy``: the fraction of labels with ``(p > threshold) == y`` (threshold 0.5);
- ``categorical_accuracy``: 1 where the argmax of the predictions is the argmax of the one-hot label;
- ``sparse_categorical_accuracy``: 1 where the argmax of the predictions is the class index.

``"accuracy"`` (or ``"acc"``) picks one of them from the loss: binary accuracy with binary
cross-entropy, categorical with categorical, sparse categorical with sparse categorical
cross-entropy. Keras picks from the shapes instead, and so chooses categorical accuracy for a
multi-label model of 18 sigmoid outputs, which means nothing there; the logs keep the name as
written (``acc``, ``val_acc``), as Keras's do. Scores of a trained model over a whole data set
(ROC AUC, F1 per label) are in ``tinyconv.diagnostics.metrics``.
"""
from __future__ import annotations

from . import arguments
from .backend import get_array_module


def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    """Per sample: the mean over its labels of ``(y_pred > threshold) == y_true``."""
    xp = get_array_module(y_pred)
    if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_true = y_true.reshape(-1, 1)  # (N,) labels for one output, as Keras takes them
    return xp.mean(y_true == (y_pred > threshold), axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Per sample: 1.0 where ``argmax(y_pred) == argmax(y_true)``, else 0.0."""
    xp = get_array_module(y_pred)
    return (xp.argmax(y_pred, axis=-1) == xp.argmax(y_true, axis=-1)).astype(xp.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """Per sample: 1.0 where ``argmax(y_pred)`` is the class index ``y_true``, else 0.0."""
    xp = get_array_module(y_pred)
    return (xp.argmax(y_pred, axis=-1) == y_true.reshape(-1)).astype(xp.float64)


class MeanMetricWrapper:
    """A metric as an object (Keras's ``BinaryAccuracy()`` and kin): its function and its name in the logs."""

    function = None

    def __init__(self, name: str | None = None, dtype=None):
        default = self.function.__name__
        self.name = arguments.object_name(name, "name", type(self).__name__) if name is not None else default

    def __call__(self, y_true, y_pred):
        return self.function(y_true, y_pred)


class BinaryAccuracy(MeanMetricWrapper):
    function = staticmethod(binary_accuracy)

    def __init__(self, name: str = "binary_accuracy", dtype=None, threshold: float = 0.5):
        super().__init__(name, dtype)
        self.threshold = arguments.number(threshold, "threshold", "BinaryAccuracy", low=0, high=1)

    def __call__(self, y_true, y_pred):
        return binary_accuracy(y_true, y_pred, self.threshold)


class CategoricalAccuracy(MeanMetricWrapper):
    function = staticmethod(categorical_accuracy)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    function = staticmethod(sparse_categorical_accuracy)


FUNCTIONS = {f.__name__: f for f in (binary_accuracy, categorical_accuracy, sparse_categorical_accuracy)}


def get(identifier, loss, owner: str):
    """``(name in the logs, per-sample function)`` for one entry of ``compile(metrics=...)``."""
    if isinstance(identifier, MeanMetricWrapper):
        return identifier.name, identifier
    if callable(identifier) and identifier in FUNCTIONS.values():
        return identifier.__name__, identifier
    if isinstance(identifier, str) and identifier in ("accuracy", "acc"):
        return identifier, FUNCTIONS[f"{loss.accuracy}_accuracy"]
    if isinstance(identifier, str) and identifier in FUNCTIONS:
        return identifier, FUNCTIONS[identifier]
    raise ValueError(f"{owner}: unknown metric {identifier!r}; expected 'accuracy' (or 'acc'), one of "
                     f"{sorted(FUNCTIONS)}, their functions in tinyconv.metrics, or BinaryAccuracy(), "
                     "CategoricalAccuracy(), SparseCategoricalAccuracy()")
