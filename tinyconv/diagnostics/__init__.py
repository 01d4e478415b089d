"""Diagnostics: looking inside a model and scoring it.

``gradcheck.py`` (numerical gradient checks), ``metrics.py`` (ROC AUC, F1, per-label reports),
``saliency.py`` and ``feature_maps.py`` (what a trained network looks at), ``frechet.py`` (the
Fréchet distance that scores a generator), ``plots.py`` (every figure of the examples and docs), ``summary.py`` (``model.summary()``'s table).
"""
