"""The weights file: one ``.npz`` archive, one entry per parameter, named by position.

An entry is ``"<layer index>/<layer name>/<parameter>"`` (``"006/dense/kernel"``): the index
comes first so that a model whose layers were named differently still loads the file, and the
name is there for a person reading the archive. Everything is checked before any layer changes,
so a file that does not fit leaves the model as it was.
"""
from __future__ import annotations

import os

import numpy as np

from .. import backend
from .npzfile import CHECKPOINT_STATE_KEY, read_npz, write_npz_atomically


def weight_arrays(model) -> dict[str, np.ndarray]:
    """Every weight of ``model`` on the host, under its entry name."""
    return {f"{i:03d}/{layer.name}/{key}": backend.to_numpy(value)
            for i, layer in enumerate(model.graph_layers) for key, value in layer.weights.items()}


def save_weights(model, path: str | os.PathLike) -> None:
    """Write the weights to ``path`` atomically: a kill mid-write leaves the old file intact."""
    write_npz_atomically(path, weight_arrays(model))


def load_weights(model, path: str | os.PathLike) -> None:
    """Read a file ``save_weights`` wrote into ``model``, all or nothing."""
    set_checked_weights(model, check_weight_arrays(model, read_npz(path), source=str(path)))


def check_weight_arrays(model, arrays: dict[str, np.ndarray], source: str) -> dict[int, dict[str, np.ndarray]]:
    """Raise ``ValueError`` naming ``source`` unless ``arrays`` fit ``model`` (shapes layer by
    layer, finite floating-point values); returns them by layer index and parameter name."""
    if CHECKPOINT_STATE_KEY in arrays:
        raise ValueError(f"{source}: this is a training checkpoint, not a weights file; restore it with "
                         "tinyconv.checkpoint.load_checkpoint(path, model, callbacks)")
    saved: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        parts = key.split("/")
        if len(parts) != 3 or not parts[0].isdigit():
            raise ValueError(f"{source}: not a tinyconv weights file: its entry {key!r} is not named "
                             "'<layer index>/<layer name>/<parameter>' as model.save_weights writes them")
        saved.setdefault(int(parts[0]), {})[parts[2]] = value
    for i, layer in enumerate(model.graph_layers):
        mine = {k: tuple(v.shape) for k, v in layer.weights.items()}
        theirs = {k: v.shape for k, v in saved.get(i, {}).items()}
        if mine != theirs:
            raise ValueError(f"{source}: weights do not fit this model at layer {i} {layer.name!r} "
                             f"({type(layer).__name__}): the model expects {mine or 'no weights'}, "
                             f"the file has {theirs or 'no weights'}")
        for key, value in saved.get(i, {}).items():
            if value.dtype.kind != "f" or not np.isfinite(value).all():
                problem = f"dtype {value.dtype}" if value.dtype.kind != "f" else "NaN or inf values"
                raise ValueError(f"{source}: layer {i} {layer.name!r} {key!r} holds {problem}; "
                                 "expected finite floating-point weights (saved from a diverged run?)")
    extra = sorted(set(saved) - set(range(len(model.graph_layers))))
    if extra:
        raise ValueError(f"{source}: the file has weights for {len(model.graph_layers) + len(extra)} layers "
                         f"or more, this model has {len(model.graph_layers)}")
    return saved


def set_checked_weights(model, saved: dict[int, dict[str, np.ndarray]]) -> None:
    """Put weights that ``check_weight_arrays`` returned into the layers."""
    for i, layer in enumerate(model.graph_layers):
        if layer.weights:
            layer.set_weights([saved[i][k] for k in layer.weights])
