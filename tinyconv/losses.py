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
"""
from __future__ import annotations

from . import arguments
from .backend import get_array_module
from .training.batches import check_label_range

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

    def __init__(self, from_logits: bool = False):
        self.from_logits = arguments.boolean(from_logits, "from_logits", type(self).__name__)
        self.cache = None  # set by forward, read by backward

    def __call__(self, y_true, y_pred) -> float:
        """Keras call order: ``loss(y_true, y_pred)``."""
        return self.forward(y_pred, y_true)

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

    def forward(self, y_pred, y_true) -> float:
        """The mean loss of a batch of (N, L) rows; caches what ``backward`` needs."""
        owner = f"BinaryCrossentropy(from_logits={self.from_logits})"
        _check(y_pred, y_true, owner)
        if not self.from_logits and not bool(((y_pred >= 0) & (y_pred <= 1)).all()):
            raise ValueError(f"{owner}: predictions must be probabilities in [0, 1]; "
                             "use from_logits=True for raw scores")
        return float(self.value(y_pred, y_true))

    def value(self, y_pred, y_true):
        """``forward`` without its checks or its read-back: the mean loss as a 0-d array where
        ``y_pred`` lives. For the training step, which checked the labels once on the host and
        reads the loss back together with its other scalars (non-finite input gives a non-finite loss)."""
        xp = get_array_module(y_pred)
        y = y_true.astype(y_pred.dtype, copy=False)
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
        return per_element.mean()

    def backward(self):
        """dL/d(y_pred), shape (N, L)."""
        if self.from_logits:
            p, y = self.kept()
            return (p - y) / p.size
        p, y, inside = self.kept()
        return (-y / p + (1 - y) / (1 - p)) * inside / p.size


class CategoricalCrossentropy(Loss):
    link = "softmax"

    def forward(self, y_pred, y_true) -> float:
        """The mean loss of a batch of (N, K) rows; caches what ``backward`` needs."""
        owner = f"CategoricalCrossentropy(from_logits={self.from_logits})"
        _check(y_pred, y_true, owner)
        if not self.from_logits:
            if not bool((y_pred >= 0).all()):
                raise ValueError(f"{owner}: predictions must be probabilities (>= 0); "
                                 "use from_logits=True for raw scores")
            if not bool((y_pred.sum(axis=1) > 0).all()):
                raise ValueError(f"{owner}: every row of predictions needs a positive sum")
        return float(self.value(y_pred, y_true))

    def value(self, y_pred, y_true):
        """``forward`` without its checks or its read-back (see ``BinaryCrossentropy.value``)."""
        xp = get_array_module(y_pred)
        y = y_true.astype(y_pred.dtype, copy=False)
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
        return per_row.mean()

    def backward(self):
        """dL/d(y_pred), shape (N, K)."""
        if self.from_logits:
            p, y = self.kept()
            return (p * y.sum(axis=1, keepdims=True) - y) / len(p)
        q, clipped, y, inside, row_sum = self.kept()
        dq = -y / clipped * inside / len(q)
        return (dq - (dq * q).sum(axis=1, keepdims=True)) / row_sum


LOSSES = {"binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy}


def get(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if not isinstance(identifier, str) or identifier not in LOSSES:
        raise ValueError(f"loss: unknown loss {identifier!r}; expected one of {sorted(LOSSES)} "
                         "or a Loss instance (BinaryCrossentropy, CategoricalCrossentropy)")
    return LOSSES[identifier]()
