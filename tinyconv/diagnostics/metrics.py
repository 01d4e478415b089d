r"""Multi-label metrics: binary accuracy, ROC AUC and F1, per label.

Inputs are host arrays: ``y_true`` (N, L) in {0, 1} and ``y_prob`` (N, L) scores in [0, 1].

- Binary accuracy thresholds at ``p > 0.5`` (as Keras does) and counts matches over every
  (sample, label) pair. With 18 outputs, Keras's plain ``"accuracy"`` would pick *categorical*
  accuracy (argmax match), which means nothing for multi-label data; tinyconv's ``"accuracy"``
  with a binary cross-entropy loss is this binary accuracy.
- ROC AUC is the probability that a random positive scores above a random negative, ties counting
  one half. That is the Mann-Whitney statistic, computed from average ranks:

  $$\mathrm{AUC} = \frac{R_+ - n_+ (n_+ + 1) / 2}{n_+ n_-}$$

  where $R_+$ is the sum of the positives' ranks among all N scores (tied scores share the mean
  of their ranks). It is undefined (NaN) for a label with only one class present.
- F1 at a threshold: $F_1 = 2\,TP / (2\,TP + FP + FN)$; NaN when a label has no positives and none
  is predicted (nothing to find, nothing claimed).
"""
from __future__ import annotations

import numpy as np

THRESHOLD = 0.5


def _check(y_true, y_prob, owner: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    if y_true.ndim == 1:
        y_true, y_prob = y_true[:, None], y_prob.reshape(-1, 1)
    if y_true.shape != y_prob.shape or y_true.ndim != 2:
        raise ValueError(f"{owner}: expected labels and scores of the same (N, labels) shape, "
                         f"got {y_true.shape} and {y_prob.shape}")
    if y_true.shape[0] == 0:
        raise ValueError(f"{owner}: expected at least one sample, got 0")
    return y_true, y_prob


def binary_accuracy(y_true, y_prob, threshold: float = THRESHOLD) -> float:
    """Fraction of (sample, label) pairs where ``y_prob > threshold`` equals ``y_true``."""
    y_true, y_prob = _check(y_true, y_prob, "binary_accuracy")
    return float(np.mean(y_true == (y_prob > threshold)))


def per_label_accuracy(y_true, y_prob, threshold: float = THRESHOLD) -> np.ndarray:
    """(L,) binary accuracy of each label."""
    y_true, y_prob = _check(y_true, y_prob, "per_label_accuracy")
    return np.mean(y_true == (y_prob > threshold), axis=0)


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..N of a 1-D array, tied values sharing the mean of the ranks they span."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Tie groups: a new group starts wherever the sorted value changes.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]  # exclusive
    group_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(y_true, y_prob) -> np.ndarray:
    """(L,) ROC AUC of each label (rank-based, ties count one half); NaN where a label has one class."""
    y_true, y_prob = _check(y_true, y_prob, "roc_auc")
    positive = y_true > 0.5
    aucs = np.full(y_true.shape[1], np.nan)
    for label in range(y_true.shape[1]):
        n_pos = int(positive[:, label].sum())
        n_neg = len(positive) - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = average_ranks(y_prob[:, label].astype(np.float64))
        rank_sum = ranks[positive[:, label]].sum()
        aucs[label] = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aucs


def f1_score(y_true, y_prob, threshold: float = THRESHOLD) -> np.ndarray:
    """(L,) F1 of each label with predictions ``y_prob > threshold``; NaN where TP + FP + FN = 0."""
    y_true, y_prob = _check(y_true, y_prob, "f1_score")
    truth, predicted = y_true > 0.5, y_prob > threshold
    tp = np.sum(truth & predicted, axis=0)
    fp = np.sum(~truth & predicted, axis=0)
    fn = np.sum(truth & ~predicted, axis=0)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def per_label_report(y_true, y_prob, names: list[str] | None = None,
                     threshold: float = THRESHOLD) -> list[dict]:
    """One row per label: ``label``, ``prevalence``, ``accuracy``, ``auc``, ``f1``; then a ``mean`` row.

    The mean row averages each column over the labels (ignoring NaN).
    """
    y_true, y_prob = _check(y_true, y_prob, "per_label_report")
    n_labels = y_true.shape[1]
    names = list(names) if names is not None else [f"label_{i}" for i in range(n_labels)]
    if len(names) != n_labels:
        raise ValueError(f"per_label_report: {len(names)} names for {n_labels} labels")
    columns = {
        "prevalence": np.mean(y_true > 0.5, axis=0),
        "accuracy": per_label_accuracy(y_true, y_prob, threshold),
        "auc": roc_auc(y_true, y_prob),
        "f1": f1_score(y_true, y_prob, threshold),
    }
    rows = [{"label": name, **{key: float(values[i]) for key, values in columns.items()}}
            for i, name in enumerate(names)]
    rows.append({"label": "mean", **{key: finite_mean(values) for key, values in columns.items()}})
    return rows


def finite_mean(values) -> float:
    """The mean of the finite values; NaN, without NumPy's warning, when there are none (a tiny test
    split where every label has one class)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
