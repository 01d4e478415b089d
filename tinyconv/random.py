"""One seed fixes every random draw: initialisation, shuffling, augmentation, dropout and a GAN's noise.

Each purpose gets its own generator, derived from the global seed, so that (for example) adding
an augmentation option never changes the initial weights. The generators' states can be saved in
a checkpoint and restored, which makes an interrupted and resumed run equal to an uninterrupted one.

Data-parallel training (``tinyconv.distributed``) splits each batch across processes. The draws
that belong to samples (augmentation, dropout masks) are still made for the whole batch, on every
process, in the same order, and each process keeps the rows of its own samples: a sample sees the
same draws however many processes share its batch. ``global_batch`` says which rows those are.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from . import arguments

# New purposes go at the end: a generator's seed is derived from its position.
PURPOSES = ("init", "shuffle", "augment", "dropout", "latent")
_seed = 0
_generators: dict[str, np.random.Generator] = {}


def set_seed(seed: int) -> None:
    """Reset every generator from ``seed``."""
    global _seed
    _seed = arguments.integer(seed, "seed", "set_seed", low=0)
    _generators.clear()


def generator(purpose: str) -> np.random.Generator:
    """The host generator for one purpose (created from the seed on first use)."""
    if purpose not in PURPOSES:
        raise ValueError(f"random.generator: unknown purpose {purpose!r}, expected one of {PURPOSES}")
    if purpose not in _generators:
        key = PURPOSES.index(purpose)
        _generators[purpose] = np.random.default_rng(np.random.SeedSequence([_seed, key]))
    return _generators[purpose]


def layer_generators(layers) -> dict[str, np.random.Generator]:
    """The generators of layers seeded on their own (``Dropout(seed=...)``), by layer name."""
    return {layer.name: layer.generator for layer in layers if getattr(layer, "generator", None) is not None}


def get_state() -> dict:
    """The states of all generators, JSON-serialisable, for checkpoints."""
    return {"seed": _seed, "generators": {p: generator(p).bit_generator.state for p in PURPOSES}}


def set_state(state: dict) -> None:
    set_seed(state["seed"])
    for purpose, bit_state in state["generators"].items():
        generator(purpose).bit_generator.state = bit_state


# (rows, size): this process holds rows ``rows`` of a batch of ``size`` samples; None: all of it.
_global_batch: ContextVar[tuple[slice, int] | None] = ContextVar("global_batch", default=None)


def whole_batch(size: int) -> slice:
    """The rows a single process holds of a batch of ``size`` samples: all of them."""
    return slice(0, size)


@contextmanager
def global_batch(rows: slice, size: int):
    """Within it, the running step holds rows ``rows`` of a batch of ``size`` samples."""
    token = _global_batch.set((rows, size))
    try:
        yield
    finally:
        _global_batch.reset(token)


def global_batch_part() -> tuple[slice, int] | None:
    """``(rows, size)`` inside ``global_batch``, else None."""
    return _global_batch.get()


def per_sample_uniform(rng: np.random.Generator, shape) -> np.ndarray:
    """``rng.random(shape)`` for a batch of ``shape[0]`` samples; inside ``global_batch``, for the
    rows it names, drawn for the whole batch and cut to those rows, so the draws do not depend on
    the split (an array of another length, such as a GAN's generated batch, is drawn as it is)."""
    part = _global_batch.get()
    if part is None or len(range(*part[0].indices(part[1]))) != shape[0]:  # not the batch fit shared out
        return rng.random(shape)
    rows, size = part
    return rng.random((size, *shape[1:]))[rows]
