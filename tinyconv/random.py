"""One seed fixes every random draw: initialisation, shuffling, augmentation, dropout and a GAN's noise.

Each purpose gets its own generator, derived from the global seed, so that (for example) adding
an augmentation option never changes the initial weights. The generators' states can be saved in
a checkpoint and restored, which makes an interrupted and resumed run equal to an uninterrupted one.
"""
from __future__ import annotations

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
