"""Training checkpoints: everything needed to resume a run exactly where it stopped.

A checkpoint is one ``.npz`` file written atomically (temporary file, fsync, rename), so a kill
during the write leaves the previous checkpoint whole. It holds:

- the weights (as ``model.save_weights`` writes them),
- the optimizer's state (step count, Adam's moments),
- ``epoch``: the number of finished epochs, i.e. the ``initial_epoch`` that resumes the run,
- each callback's state (EarlyStopping's best value and wait counter, ...),
- every random generator: ``tinyconv.random``'s (shuffling, augmentation, dropout), those of layers
  with their own seed, and the data iterator's (when it has ``get_state``).

Arrays are stored as arrays; everything else goes into one JSON document stored in the same file
under ``__state__``. Restoring all of it before ``fit(..., initial_epoch=epoch)`` makes the resumed
run produce, on the CPU, the same weights bit for bit as a run that was never interrupted.
"""
from __future__ import annotations

import copy
import json
import os

import numpy as np

from .. import random
from ..storage.npzfile import CHECKPOINT_STATE_KEY, read_npz, write_npz_atomically
from ..storage.weights import check_weight_arrays, set_checked_weights, weight_arrays

FORMAT = "tinyconv-training-checkpoint-1"


def capture(model, epoch: int, callbacks=(), data=None) -> dict:
    """A host-side copy of the training state after ``epoch`` finished epochs."""
    if not model.compiled:
        raise RuntimeError(f"model {model.name!r}: compile it before saving a training checkpoint")
    return {
        "format": FORMAT,
        "epoch": int(epoch),
        **model.training_state(),  # weights and optimizer (a GAN: those of both its models)
        "random": random.get_state(),
        "layer_generators": {name: generator.bit_generator.state
                             for name, generator in random.layer_generators(model.layers).items()},
        "callbacks": [{"class": type(cb).__name__, "state": cb.get_state()} for cb in callbacks],
        "data": data.get_state() if hasattr(data, "get_state") else None,
    }


def model_state(model) -> dict:
    """One model's weights and its optimizer's state."""
    optimizer = model.optimizer
    return {"weights": {key: np.array(value) for key, value in weight_arrays(model).items()},
            "optimizer": {"class": type(optimizer).__name__, **optimizer.get_state()}}


def check_model_state(state: dict, model, source: str) -> dict:
    """Every check of ``set_model_state``, changing nothing; returns the weights by layer."""
    if "weights" not in state:
        raise ValueError(f"{source}: a GAN's checkpoint (a generator's and a discriminator's weights), not one "
                         f"model's; load it into the GAN")
    saved_optimizer = state["optimizer"]["class"]
    if saved_optimizer != type(model.optimizer).__name__:
        raise ValueError(f"{source}: the checkpoint was trained with {saved_optimizer}, "
                         f"this model is compiled with {type(model.optimizer).__name__}")
    weights = check_weight_arrays(model, state["weights"], source)
    model.optimizer.check_state(state["optimizer"], model.trainable_params(), source)
    return weights


def set_model_state(state: dict, model, weights: dict) -> None:
    """Put a checked ``model_state`` back."""
    set_checked_weights(model, weights)
    model.optimizer.set_state(state["optimizer"], model.trainable_params())


def _split_arrays(obj, prefix: str, arrays: dict):
    """Replace every array inside ``obj`` by ``{"__array__": key}`` and collect it in ``arrays``."""
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join_arrays(obj, arrays: dict, source: str):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            if obj["__array__"] not in arrays:
                raise ValueError(f"{source}: incomplete checkpoint, array {obj['__array__']!r} is missing")
            return arrays[obj["__array__"]]
        return {k: _join_arrays(v, arrays, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays, source) for v in obj]
    return obj


def write(path: str | os.PathLike, state: dict) -> None:
    """Write a ``capture()``d state to ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {}
    document = _split_arrays(state, "", arrays)
    arrays[CHECKPOINT_STATE_KEY] = np.frombuffer(json.dumps(document).encode("utf-8"), dtype=np.uint8)
    write_npz_atomically(path, arrays)


def read(path: str | os.PathLike, expected_format: str = FORMAT) -> dict:
    """Read a checkpoint (of ``expected_format``; a GAN's holds both its models); a truncated, damaged
    or foreign file raises ``ValueError``."""
    source = os.fspath(path)
    arrays = read_npz(source)
    if CHECKPOINT_STATE_KEY not in arrays:
        raise ValueError(f"{source}: not a tinyconv training checkpoint (no {CHECKPOINT_STATE_KEY!r} entry); "
                         "a weights-only file loads with model.load_weights")
    try:
        document = json.loads(arrays.pop(CHECKPOINT_STATE_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: damaged checkpoint state ({exc})") from exc
    if document.get("format") != expected_format:
        raise ValueError(f"{source}: expected checkpoint format {expected_format!r}, "
                         f"got {document.get('format')!r}")
    return _join_arrays(document, arrays, source)


def save_checkpoint(path: str | os.PathLike, model, epoch: int, callbacks=(), data=None) -> None:
    """Capture and write the training state after ``epoch`` finished epochs."""
    write(path, capture(model, epoch, callbacks, data))


def restore(state: dict, model, callbacks=(), data=None, source: str = "checkpoint") -> int:
    """Put a ``capture()``d state back into the model, its optimizer, the callbacks, the generators
    and ``data``; returns the epoch to pass as ``fit(..., initial_epoch=...)``.

    Everything is checked against the model, the callbacks and ``data`` first; a state that does
    not fit raises ``ValueError`` and changes nothing.
    """
    if not model.compiled:
        raise RuntimeError(f"model {model.name!r}: compile it before loading a training checkpoint")
    try:
        checked = check(state, model, callbacks, data, source)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a damaged or hand-made state
        raise ValueError(f"{source}: damaged checkpoint state ({type(exc).__name__}: {exc})") from exc

    # Checked: apply.
    model.set_training_state(state, checked)
    random.set_state(state["random"])
    generators = random.layer_generators(model.layers)
    for name, bit_state in state["layer_generators"].items():
        generators[name].bit_generator.state = bit_state
    for callback, entry in zip(callbacks, state["callbacks"]):
        callback.set_state(entry["state"])
    if state["data"] is not None:
        data.set_state(state["data"])
    return int(state["epoch"])


def check(state: dict, model, callbacks=(), data=None, source: str = "checkpoint"):
    """Every check of ``restore``, changing nothing; returns what ``model.set_training_state`` takes.
    Callbacks, data iterators and generators are tried on throwaway copies, so that their own
    checks run without changing them."""
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"{source}: damaged checkpoint state: epoch {epoch!r}")
    saved_callbacks = [entry["class"] for entry in state["callbacks"]]
    given_callbacks = [type(cb).__name__ for cb in callbacks]
    if saved_callbacks != given_callbacks:
        raise ValueError(f"{source}: the checkpoint holds the state of callbacks {saved_callbacks}, "
                         f"got callbacks {given_callbacks}; pass the same callbacks in the same order")
    generators = random.layer_generators(model.layers)
    if set(generators) != set(state["layer_generators"]):
        raise ValueError(f"{source}: the checkpoint has generators for layers {sorted(state['layer_generators'])}, "
                         f"this model has them for {sorted(generators)}")
    checked = model.check_training_state(state, source)
    random_state = state["random"]
    if set(random_state["generators"]) - set(random.PURPOSES) or not isinstance(random_state["seed"], int):
        raise ValueError(f"{source}: damaged checkpoint state: random generators {random_state!r:.200}")
    bit_states = [*random_state["generators"].values(), *state["layer_generators"].values()]
    for bit_state in bit_states:
        try:
            np.random.PCG64().state = bit_state  # the type tinyconv's generators use
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{source}: damaged checkpoint state: a generator state is refused ({exc})") from exc
    for callback, entry in zip(callbacks, state["callbacks"]):
        _try_on_a_copy(callback, entry["state"], source)
    if state["data"] is not None and data is None:
        raise ValueError(f"{source}: the checkpoint holds the position of the batches fit drew from arrays, "
                         "which only fit can restore: resume with fit(x, y, ..., callbacks=[..., "
                         f"TrainingCheckpoint({source!r}, restore=True)])")
    if state["data"] is not None:
        _try_on_a_copy(data, state["data"], source)
    return checked


def _try_on_a_copy(target, saved: dict, source: str) -> None:
    try:
        copy.copy(target).set_state(saved)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{source}: the saved state of {type(target).__name__} does not fit it "
                         f"({type(exc).__name__}: {exc})") from exc


def load_checkpoint(path: str | os.PathLike, model, callbacks=(), data=None) -> int:
    """Restore a checkpoint written by ``save_checkpoint`` (or ``TrainingCheckpoint``).

    Parameters
    ----------
    path : the ``.npz`` checkpoint.
    model : a compiled model of the same architecture and optimizer type.
    callbacks : the callbacks of the run, in the same order as when it was saved.
    data : the training iterator (e.g. ``ImageDataGenerator.flow(...)``) whose position and
        generator the checkpoint holds. A run that fit on arrays is resumed by ``fit`` itself,
        which batches them: ``fit(x, y, callbacks=[..., TrainingCheckpoint(path, restore=True)])``.

    Returns
    -------
    int : the number of finished epochs, to pass as ``fit(..., initial_epoch=...)``.
    """
    return restore(read(path), model, callbacks, data, source=os.fspath(path))
