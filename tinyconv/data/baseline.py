"""The global-statistics baseline: what can be predicted without looking at where anything is.

Per image and channel it keeps the mean, the standard deviation and five percentiles, then fits
one logistic regression per label on those features. A label it predicts well is one that changes
how bright or how varied a stain is; a CNN must beat it on every label about shape or position.
The simulator's tests hold it near chance, and ``examples/train_cells.py`` reports it beside the CNN.
"""
from __future__ import annotations

import numpy as np


def global_statistics(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, 7 C): per channel mean, std and the 5/25/50/75/95th percentiles."""
    percentiles = np.percentile(images, [5, 25, 50, 75, 95], axis=(1, 2))  # (5, N, C)
    return np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2)), *percentiles], axis=1)


def logistic_regression_baseline(x_train, y_train, x_test, steps: int = 2000, l2: float = 1e-3) -> np.ndarray:
    """Probabilities (N_test, L) of one L2-regularised logistic regression per label, fitted on the
    standardised ``global_statistics`` of ``x_train`` by full-batch gradient descent (a convex loss)."""
    f_train, f_test = global_statistics(x_train), global_statistics(x_test)
    mean, std = f_train.mean(0), f_train.std(0) + 1e-8
    with_bias = lambda f: np.hstack([(f - mean) / std, np.ones((len(f), 1))])
    a_train = with_bias(f_train)
    weights = np.zeros((a_train.shape[1], y_train.shape[1]))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a_train @ weights)))
        weights -= 0.5 * (a_train.T @ (p - y_train) / len(a_train) + l2 * weights)
    return 1 / (1 + np.exp(-(with_bias(f_test) @ weights)))
