r"""The Fréchet distance between two sets of feature vectors: how a GAN's images are scored.

Fit a Gaussian to each set, mean ``mu`` and covariance ``S`` (features as columns). The Fréchet
(2-Wasserstein) distance between the two Gaussians is

    d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})

It is 0 for identical statistics and grows both when the generated images are off (the means
move) and when they lack variety (the covariances differ: a collapsed generator has a small S).
With features from an image classifier's last hidden layer this is the FID of Heusel et al.
(2017); tinyconv uses a CNN trained on the cell labels, so the distance is measured in features
that tell cells apart.

The trace term needs no matrix square root of a non-symmetric matrix: ``S_1 S_2`` has the same
eigenvalues as the symmetric ``R S_2 R`` with ``R = S_1^{1/2}``, so
``Tr (S_1 S_2)^{1/2} = sum_i sqrt(lambda_i(R S_2 R))``, two symmetric eigen-decompositions.
"""
from __future__ import annotations

import numpy as np


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # clip rounding below 0


def frechet_distance(features_a, features_b) -> float:
    """d^2 between Gaussians fitted to ``features_a`` (N, D) and ``features_b`` (M, D), in float64."""
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance: expected two (samples >= 2, features) arrays with the same "
                         f"number of features, got shapes {a.shape} and {b.shape}")
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _symmetric_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov_b @ root), 0, None)).sum()
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    return float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
