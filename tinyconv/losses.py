r"""Cross-entropy losses: binary (multi-label, (N, L)) and categorical (one class of K, (N, K)).

Both follow ``loss.forward(y_pred, y_true) -> float`` (the batch mean; caches what backward
needs) and ``loss.backward() -> dL/d(y_pred)``.

## Binary cross-entropy

Probability form (``from_logits=False``, Keras's default), with p clipped to [eps, 1 - eps], eps = 1e-7:

    loss = mean over n and l of  -( y log p + (1 - y) log(1 - p) )
    dL/dp = ( -y / p + (1 - y) / (1 - p) ) / (N * L)      (0 where p was clipped, as in Keras)

"Clipped" means strictly outside [eps, 1 - eps]: at p = eps exactly the clip is the identity and
the gradient flows, as TensorFlow's ``clip_by_value`` lets it. At p = 0 or 1 the loss is the
clipped, finite value (about 16.1 in float64; 15.9 in float32, where 1 - eps rounds to 1 - 2^-23).

Logits form (``from_logits=True``), stable for any z because no exp overflows:

    loss = mean of  max(z, 0) - z * y + log(1 + exp(-|z|))
    dL/dz = ( sigmoid(z) - y ) / (N * L)

Fusion: when a model ends in a sigmoid and is trained with the probability form, the training
step skips the sigmoid and uses the logits form on its input z. It is the same function of z
without the clipping, and its gradient ``(p - y) / (N*L)`` keeps full precision where
``p (1 - p)`` would underflow.

## Categorical cross-entropy

Targets are one-hot rows (or any rows of probabilities summing to 1). Probability form (Keras's
default): the rows of p are first rescaled to sum to 1 (``q = p / sum_k p_k``, as Keras does),
clipped to [eps, 1 - eps], then

    loss = mean over n of  -sum_k y_k log q_k
    dL/dq_k = -y_k / q_k / N          (0 where q was clipped)
    dL/dp_j = ( dL/dq_j - sum_k dL/dq_k q_k ) / sum_k p_k     (through the rescaling)

Logits form (``from_logits=True``), with ``lse(z) = log sum_k exp(z_k)`` computed after
subtracting the row's maximum (no overflow):

    loss = mean over n of  sum_k y_k (lse(z) - z_k)
    dL/dz = ( softmax(z) * sum_k y_k - y ) / N        = (p - y) / N for one-hot rows

Fusion works as for the sigmoid: a model ending in a softmax, trained with the probability form,
is trained through the logits form on the softmax's input.

## Sparse categorical cross-entropy

The same loss with each target given as its class index ``k`` ((N,) or (N, 1) integers) instead of a
one-hot row: ``loss = mean over n of -log q_{n, k_n}``. It is categorical cross-entropy on
``one_hot(k)``, and is computed so, which keeps one copy of the math and of its fusion.

## Functions and per-sample losses

``binary_crossentropy(y_true, y_pred)``, ``categorical_crossentropy`` and
``sparse_categorical_crossentropy`` are Keras's functions: one loss per sample (binary: the mean
over the labels), shape (N,). ``compile(loss=losses.categorical_crossentropy)`` means the class.
"""
from __future__ import annotations

import numpy as np

from . import arguments
from .backend import get_array_module
import warnings

from .training.batches import check_label_range, check_labels

EPSILON = 1e-7


def _check(y_pred, y_true, owner: str):
    if not hasattr(y_pred, "shape") or not hasattr(y_true, "shape"):
        raise TypeError(f"{owner}: expected arrays, got {type(y_pred).__name__} and {type(y_true).__name__}")
    if y_pred.shape != y_true.shape:
        raise ValueError(f"{owner}: predictions of shape {tuple(y_pred.shape)} and labels of shape "
                         f"{tuple(y_true.shape)} differ; expected the same (batch, labels) shape")
    if y_pred.ndim != 2:
        raise ValueError(f"{owner}: expected 2-D (batch, labels) arrays, got shape {tuple(y_pred.shape)}")
    xp = get_array_module(y_pred)
    if not bool(xp.isfinite(y_pred).all()):
        raise ValueError(f"{owner}: predictions contain NaN or inf")
    check_label_range(y_true, owner)


class Loss:
    """Base of the losses. ``link``: the final activation ("sigmoid", "softmax") whose input the
    logits form of the loss takes, which lets training fuse the two."""

    link = ""
    accuracy = "binary"

    def __init__(self, from_logits: bool = False):
        self.from_logits = arguments.boolean(from_logits, "from_logits", type(self).__name__)
        self.cache = None  # set by forward, read by backward

    def __call__(self, y_true, y_pred) -> float:
        """Keras call order: ``loss(y_true, y_pred)``."""
        return self.forward(y_pred, y_true)

    def check(self, y_pred, y_true) -> None:
        """Fail clearly unless predictions and targets fit this loss."""
        _check(y_pred, y_true, f"{type(self).__name__}(from_logits={self.from_logits})")

    def forward(self, y_pred, y_true) -> float:
        """The mean loss of a batch; caches what ``backward`` needs."""
        self.check(y_pred, y_true)
        return float(self.value(y_pred, y_true))

    def value(self, y_pred, y_true):
        """``forward`` without its checks or its read-back: the mean loss as a 0-d array where
        ``y_pred`` lives. For the training step, which checked the labels once on the host and
        reads the loss back together with its other scalars (non-finite input gives a non-finite loss)."""
        return self.per_sample(y_pred, y_true).mean()

    def check_targets(self, y, n: int, output_shape: tuple | None, owner: str) -> None:
        """Fail clearly unless ``y`` holds the labels of ``n`` predictions of ``output_shape`` (None:
        not known yet): for this loss, (n, *output_shape) values in [0, 1]."""
        check_labels(y, n, owner)
        if output_shape is not None and tuple(y.shape[1:]) != tuple(output_shape):
            raise ValueError(f"{owner}: the model has {output_shape[0]} outputs, the labels have shape "
                             f"{tuple(y.shape)}")

    def probabilities(self):
        """The sigmoid or softmax of the last forward's logits (``from_logits=True``), which the loss
        computes anyway: a training step reads its predictions from here instead of computing them twice."""
        if not self.from_logits:
            raise RuntimeError(f"{type(self).__name__}(from_logits=False): its inputs are the probabilities already")
        return self.kept()[0]

    def kept(self) -> tuple:
        """What the last forward kept for ``backward``; before any forward, an error that says so."""
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}(from_logits={self.from_logits}): backward was called "
                               "before forward; call forward(y_pred, y_true) first")
        return self.cache


class BinaryCrossentropy(Loss):
    link = "sigmoid"
    accuracy = "binary"  # what compile(metrics=["accuracy"]) means with this loss (see metrics.py)

    def check(self, y_pred, y_true) -> None:
        owner = f"BinaryCrossentropy(from_logits={self.from_logits})"
        _check(y_pred, _as_columns(y_true, y_pred), owner)
        if not self.from_logits and not bool(((y_pred >= 0) & (y_pred <= 1)).all()):
            raise ValueError(f"{owner}: predictions must be probabilities in [0, 1]; "
                             "use from_logits=True for raw scores")

    def check_targets(self, y, n: int, output_shape: tuple | None, owner: str) -> None:
        """Also (n,) labels for a model with one output (Keras takes them for an (N, 1) sigmoid)."""
        if getattr(y, "ndim", None) == 1 and output_shape in (None, (1,)):
            y = y.reshape(-1, 1)
        super().check_targets(y, n, output_shape, owner)

    def per_sample(self, y_pred, y_true):
        """The loss of each row, the mean over its labels, shape (N,)."""
        return self.elementwise(y_pred, y_true).mean(axis=1)

    def value(self, y_pred, y_true):
        return self.elementwise(y_pred, y_true).mean()

    def elementwise(self, y_pred, y_true):
        """The loss of each label, shape (N, L); caches what ``backward`` needs."""
        xp = get_array_module(y_pred)
        y = _as_columns(y_true, y_pred).astype(y_pred.dtype, copy=False)
        if self.from_logits:
            z = y_pred
            per_element = xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
            e = xp.exp(-xp.abs(z))
            self.cache = xp.where(z >= 0, 1 / (1 + e), e / (1 + e)), y
        else:
            p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
            per_element = -(y * xp.log(p) + (1 - y) * xp.log(1 - p))
            inside = (y_pred >= EPSILON) & (y_pred <= 1 - EPSILON)
            self.cache = p, y, inside
        return per_element

    def backward(self):
        """dL/d(y_pred), shape (N, L)."""
        if self.from_logits:
            p, y = self.kept()
            return (p - y) / p.size
        p, y, inside = self.kept()
        return (-y / p + (1 - y) / (1 - p)) * inside / p.size


class CategoricalCrossentropy(Loss):
    link = "softmax"
    accuracy = "categorical"

    def check(self, y_pred, y_true) -> None:
        owner = f"{type(self).__name__}(from_logits={self.from_logits})"
        if not hasattr(y_pred, "ndim") or y_pred.ndim != 2:
            raise ValueError(f"{owner}: expected 2-D (batch, classes) predictions, got "
                             f"{f'shape {tuple(y_pred.shape)}' if hasattr(y_pred, 'shape') else type(y_pred).__name__}")
        _check(y_pred, self.one_hot(y_true, y_pred, owner), owner)
        if not self.from_logits:
            if not bool((y_pred >= 0).all()):
                raise ValueError(f"{owner}: predictions must be probabilities (>= 0); "
                                 "use from_logits=True for raw scores")
            if not bool((y_pred.sum(axis=1) > 0).all()):
                raise ValueError(f"{owner}: every row of predictions needs a positive sum")

    def check_targets(self, y, n: int, output_shape: tuple | None, owner: str) -> None:
        """Also warns (once per call site) when a label row is not one class: an all-zero row adds
        nothing to the loss, a row with several 1s asks for several classes at once (a multi-label
        task: sigmoid outputs and binary cross-entropy)."""
        super().check_targets(y, n, output_shape, owner)
        sums = np.asarray(y, dtype=np.float64).sum(axis=1)
        if (np.abs(sums - 1) > 1e-3).any():  # one text, so that Python shows it once, however many batches
            warnings.warn(f"{owner}: categorical cross-entropy expects each label row to be one class (one 1, "
                          "or probabilities summing to 1), but some rows are all zero or have several 1s: "
                          "all-zero rows add nothing to the loss; for several labels per image use sigmoid "
                          "outputs with binary_crossentropy", UserWarning, stacklevel=5)

    def one_hot(self, y_true, y_pred, owner: str = ""):
        """The targets as rows of class probabilities (they are already)."""
        return y_true

    def per_sample(self, y_pred, y_true):
        """The loss of each row, shape (N,); caches what ``backward`` needs."""
        xp = get_array_module(y_pred)
        y = self.one_hot(y_true, y_pred).astype(y_pred.dtype, copy=False)
        if self.from_logits:
            shifted = y_pred - y_pred.max(axis=1, keepdims=True)
            e = xp.exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            per_row = (y * (xp.log(total) - shifted)).sum(axis=1)  # log(total) = lse(z) - max(z)
            self.cache = e / total, y
        else:
            row_sum = y_pred.sum(axis=1, keepdims=True)
            q = y_pred / row_sum
            clipped = xp.clip(q, EPSILON, 1 - EPSILON)
            per_row = -(y * xp.log(clipped)).sum(axis=1)
            inside = (q > EPSILON) & (q < 1 - EPSILON)
            self.cache = q, clipped, y, inside, row_sum
        return per_row

    def backward(self):
        """dL/d(y_pred), shape (N, K)."""
        if self.from_logits:
            p, y = self.kept()
            return (p * y.sum(axis=1, keepdims=True) - y) / len(p)
        q, clipped, y, inside, row_sum = self.kept()
        dq = -y / clipped * inside / len(q)
        return (dq - (dq * q).sum(axis=1, keepdims=True)) / row_sum


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with class indices for targets: (N,) or (N, 1) integers in [0, K)."""

    accuracy = "sparse_categorical"

    def check_targets(self, y, n: int, output_shape: tuple | None, owner: str) -> None:
        classes = output_shape[-1] if output_shape is not None else None
        check_class_indices(y, n, classes, owner)

    def one_hot(self, y_true, y_pred, owner: str = ""):
        """Index k becomes the row with a 1 at k, on ``y_pred``'s device and in its dtype."""
        if owner:  # a public call: the indices are checked here (training checked them once, up front)
            check_class_indices(y_true, len(y_pred), y_pred.shape[-1] if y_pred.ndim == 2 else None, owner)
        xp = get_array_module(y_pred)
        rows = xp.zeros(y_pred.shape, dtype=y_pred.dtype)
        rows[xp.arange(len(rows)), xp.asarray(y_true).reshape(-1).astype(xp.int64)] = 1
        return rows


def check_class_indices(y, n: int, classes: int | None, owner: str) -> None:
    """Fail clearly unless ``y`` is (n,) or (n, 1) whole numbers in [0, classes)."""
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"{owner}: expected an array of class indices (N,), got {type(y).__name__}")
    if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise ValueError(f"{owner}: sparse categorical cross-entropy takes one class index per sample, (N,) or "
                         f"(N, 1), got shape {tuple(y.shape)}" + ("; for one-hot rows use categorical_crossentropy"
                                                                  if y.ndim == 2 else ""))
    if y.shape[0] != n:
        raise ValueError(f"{owner}: {n} samples but {y.shape[0]} class indices; expected the same N")
    host = np.asarray(y.get() if hasattr(y, "get") else y)
    if host.dtype.kind not in "fiu" or not np.all(np.isfinite(host)) or not np.all(host == np.round(host)):
        raise ValueError(f"{owner}: class indices must be whole numbers, got dtype {host.dtype} with values "
                         f"such as {host.ravel()[:3].tolist()}")
    bad = host[(host < 0) | ((host >= classes) if classes is not None else False)]
    if bad.size:
        raise ValueError(f"{owner}: class indices must lie in [0, {classes if classes is not None else 'K'}) "
                         f"for a model with {classes} outputs, got {bad.ravel()[:3].tolist()}")


def _as_columns(y_true, y_pred):
    """(N,) labels for (N, 1) predictions as a column, as Keras takes them."""
    if getattr(y_true, "ndim", None) == 1 and getattr(y_pred, "ndim", None) == 2 and y_pred.shape[1] == 1:
        return y_true.reshape(-1, 1)
    return y_true


def binary_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Keras's function: the loss of each sample (the mean over its labels), shape (N,)."""
    loss = BinaryCrossentropy(from_logits=from_logits)
    loss.check(y_pred, y_true)
    return loss.per_sample(y_pred, y_true)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Keras's function: the loss of each sample, shape (N,)."""
    loss = CategoricalCrossentropy(from_logits=from_logits)
    loss.check(y_pred, y_true)
    return loss.per_sample(y_pred, y_true)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Keras's function, with class indices for targets: the loss of each sample, shape (N,)."""
    loss = SparseCategoricalCrossentropy(from_logits=from_logits)
    loss.check(y_pred, y_true)
    return loss.per_sample(y_pred, y_true)


LOSSES = {"binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
          "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}
FUNCTIONS = {binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
             sparse_categorical_crossentropy: SparseCategoricalCrossentropy}


def get(identifier) -> Loss:
    """A loss from its name, Keras's function of it, or a ``Loss``."""
    if isinstance(identifier, Loss):
        return identifier
    if callable(identifier) and identifier in FUNCTIONS:
        return FUNCTIONS[identifier]()
    if callable(identifier):
        raise ValueError(f"loss: {getattr(identifier, '__name__', identifier)!r} is a function tinyconv does not "
                         "know; Keras differentiates any function automatically, tinyconv's backprop is written "
                         "out, so a loss of your own is a subclass of tinyconv.losses.Loss with forward (its "
                         "per_sample values) and backward (its gradient)")
    if not isinstance(identifier, str) or identifier not in LOSSES:
        raise ValueError(f"loss: unknown loss {identifier!r}; expected one of {sorted(LOSSES)}, Keras's function of "
                         "one of them (tinyconv.losses.binary_crossentropy, ...) or a Loss instance")
    return LOSSES[identifier]()
