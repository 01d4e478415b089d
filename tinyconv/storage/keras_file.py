"""Keras 3's file formats: the ``.keras`` archive (a whole model) and ``.weights.h5`` (its weights).

A ``.keras`` file is a zip archive of three entries, as Keras 3 writes it:

- ``metadata.json``: the Keras version whose format it follows, and when it was saved;
- ``config.json``: the architecture (``keras_config.py``) and the ``compile_config`` (optimizer,
  loss, metrics), so a loaded model is ready to train on;
- ``model.weights.h5``: the weights in Keras's HDF5 layout. A layer's weights are the datasets
  ``layers/<key>/vars/0, 1, ...`` in Keras's order (kernel, bias; gamma, beta, moving mean, moving
  variance), where the key is not the layer's name but its Keras class in snake case, numbered in
  the order of ``model.layers`` (``conv2d``, ``conv2d_1``, ``dense``, ...), because Keras addresses
  weights by their place in the model, not by names that vary between runs; the optimizer's are ``optimizer/vars/0`` (its step count), ``1`` (its learning rate),
  then one slot per trainable weight and kind, in Keras's order (Adam: m and v of each weight in turn).

A ``.weights.h5`` file is that HDF5 file alone. Both are written atomically (a temporary file,
flushed, renamed), and read with every check done before any weight changes. Optimizer state
travels for Adam, AdamW and SGD, whose slots mean the same in both engines; another optimizer's
settings travel in ``compile_config`` and its slots start afresh.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import re
import zipfile

import numpy as np

from .. import backend, losses, optimizers
from . import atomic
from .keras_config import layer_config, model_config

KERAS_VERSION = "3.15.1"  # the version whose format these files follow (checked by loading them in it)
OPTIMIZER_SETTINGS = {"Adam": ("beta_1", "beta_2", "epsilon"), "AdamW": ("weight_decay", "beta_1", "beta_2", "epsilon"),
                      "Nadam": ("beta_1", "beta_2", "epsilon"), "SGD": ("momentum", "nesterov"),
                      "RMSprop": ("rho", "momentum", "epsilon", "centered"),
                      "Adagrad": ("initial_accumulator_value", "epsilon"), "Adadelta": ("rho", "epsilon")}


def _h5py():
    import h5py  # Keras's weights layout is HDF5; h5py is tinyconv's reader and writer for it

    return h5py


def keras_layers(model) -> list:
    """``(key, layer)`` for the layers Keras's weights file lists: ``model.layers`` (a Sequential's
    without its InputLayer), keyed by Keras class in snake case, numbered from the second of a kind."""
    seen: dict[str, int] = {}
    keyed = []
    for layer in model.layers:
        kind = _keras_snake_case(layer_config(layer)["class_name"])
        keyed.append((kind if kind not in seen else f"{kind}_{seen[kind] + 1}", layer))
        seen[kind] = seen[kind] + 1 if kind in seen else 0
    return keyed


def _keras_snake_case(class_name: str) -> str:
    """Keras's rule: ``_`` before a capital that starts a lowercase run and between a lowercase letter
    and a capital (``MaxPooling2D`` -> ``max_pooling2d``, ``LeakyReLU`` -> ``leaky_re_lu``)."""
    spaced = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", spaced).lower()


# --- writing ---------------------------------------------------------------------------------------------
def write_weights(model, file) -> None:
    """The HDF5 weights file of ``model`` into the binary file object ``file``."""
    with _h5py().File(file, "w") as h5:
        h5.create_group("vars").attrs["name"] = model.name
        group = h5.create_group("layers")
        for key, layer in keras_layers(model):
            variables = group.create_group(key).create_group("vars")
            variables.attrs["name"] = layer.name
            for i, value in enumerate(layer.weights.values()):
                variables.create_dataset(str(i), data=backend.to_numpy(value))
        if model.compiled:
            _write_optimizer(h5, model)


def _write_optimizer(h5, model) -> None:
    optimizer = model.optimizer
    kind = type(optimizer).__name__
    variables = h5.create_group("optimizer").create_group("vars")
    variables.attrs["name"] = kind.lower()
    variables.create_dataset("0", data=np.int64(optimizer.iterations))
    variables.create_dataset("1", data=np.float32(optimizer.learning_rate))
    for i, value in enumerate(_keras_slots(optimizer, model.trainable_params())):
        variables.create_dataset(str(i + 2), data=backend.to_numpy(value))


def _keras_slots(optimizer, params) -> list:
    """The optimizer's slot arrays in Keras's order (empty when none are made yet or they do not travel)."""
    kind = type(optimizer).__name__
    if optimizer.iterations == 0 or not params:
        return []
    if kind in ("Adam", "AdamW"):
        return [slot for m, v in zip(optimizer.slots["m"], optimizer.slots["v"]) for slot in (m, v)]
    if kind == "SGD" and optimizer.momentum > 0:
        return list(optimizer.slots["velocity"])
    return []


def compile_config(model) -> dict | None:
    if not model.compiled:
        return None
    optimizer, loss = model.optimizer, model.loss
    kind = type(optimizer).__name__
    settings = {name: getattr(optimizer, name) for name in OPTIMIZER_SETTINGS.get(kind, ())}
    loss_kind = type(loss).__name__
    return {"optimizer": {"module": "keras.optimizers", "class_name": kind,
                          "config": {"name": kind.lower(), "learning_rate": optimizer.learning_rate, **settings},
                          "registered_name": None},
            "loss": {"module": "keras.losses", "class_name": loss_kind,
                     "config": {"name": _snake(loss_kind), "reduction": "sum_over_batch_size",
                                "from_logits": loss.from_logits},
                     "registered_name": None},
            "loss_weights": None, "metrics": list(model.metrics) or None, "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def save_model(model, path) -> None:
    """Write ``model`` as a ``.keras`` archive at ``path``, atomically."""
    document = model_config(model)
    compiled = compile_config(model)
    if compiled is not None:
        document["compile_config"] = compiled
    weights = io.BytesIO()
    write_weights(model, weights)
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(f):
        with zipfile.ZipFile(f, "w") as archive:
            archive.writestr("metadata.json", json.dumps(metadata))
            archive.writestr("config.json", json.dumps(document))
            archive.writestr("model.weights.h5", weights.getvalue())
    atomic.write_file(path, write, "save")


def save_weights(model, path) -> None:
    """Write ``model``'s weights (and optimizer state) as a Keras ``.weights.h5`` file, atomically."""
    atomic.write_file(path, lambda f: write_weights(model, f), "save_weights")


# --- reading ---------------------------------------------------------------------------------------------
def read_archive(path) -> tuple[dict, bytes]:
    """``(config document, weights file bytes)`` of a ``.keras`` archive, or an error naming ``path``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_model: {path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = {"config.json", "model.weights.h5"} - names
            if missing:
                raise ValueError(f"load_model: {path}: not a Keras 3 model file: it has no {sorted(missing)}")
            return json.loads(archive.read("config.json")), archive.read("model.weights.h5")
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"load_model: {path}: not a readable .keras archive (truncated or corrupt?): {exc}") from exc


def load_weights(model, file, source: str) -> None:
    """Read an HDF5 weights file (a path or a binary file object) into ``model``: all or nothing."""
    h5py = _h5py()
    try:
        h5 = h5py.File(file, "r")
    except OSError as exc:
        raise ValueError(f"{source}: not a readable HDF5 weights file (truncated or corrupt?): {exc}") from exc
    with h5:
        values = _checked_layer_weights(model, h5, source)
        optimizer_state = _checked_optimizer_state(model, h5, source)
    for layer, arrays in values:
        layer.set_weights(arrays)
    if optimizer_state is not None:
        model.optimizer.set_state(optimizer_state, model.trainable_params())


def _checked_layer_weights(model, h5, source: str) -> list:
    found = []
    for name, layer in keras_layers(model):
        if not layer.weights:
            continue
        key = f"layers/{name}/vars"
        if key not in h5:
            raise ValueError(f"{source}: no weights for layer {layer.name!r} ({type(layer).__name__}); the file holds "
                             f"layers {sorted(h5['layers']) if 'layers' in h5 else []}")
        group = h5[key]
        arrays = [np.asarray(group[str(i)]) for i in range(len(group))]
        expected = [tuple(v.shape) for v in layer.weights.values()]
        if [a.shape for a in arrays] != expected:
            raise ValueError(f"{source}: layer {layer.name!r} ({type(layer).__name__}) expects weights of shapes "
                             f"{expected}, the file has {[a.shape for a in arrays]}")
        for array in arrays:
            # numbers, finite (Keras keeps a Normalization's sample count as an integer)
            if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
                raise ValueError(f"{source}: layer {layer.name!r} holds {array.dtype} or non-finite weights; "
                                 "expected finite numbers")
        found.append((layer, arrays))
    return found


def _checked_optimizer_state(model, h5, source: str) -> dict | None:
    """The optimizer's state from the file, in tinyconv's form (None when there is none to restore)."""
    if not model.compiled or "optimizer/vars" not in h5:
        return None
    group = h5["optimizer/vars"]
    values = [np.asarray(group[str(i)]) for i in range(len(group))]
    if len(values) < 2:
        return None
    optimizer, params = model.optimizer, model.trainable_params()
    kind = type(optimizer).__name__
    slots = values[2:]
    # The file holds the rate in float32; the compile_config's exact value, when it rounds to it, is kept.
    rate = optimizer.learning_rate if np.float32(optimizer.learning_rate) == values[1] else float(values[1])
    state = {"iterations": int(values[0]), "learning_rate": rate,
             "slots": {name: [] for name in optimizer.slot_names}}
    if slots:
        if kind in ("Adam", "AdamW") and len(slots) == 2 * len(params):
            state["slots"] = {"m": slots[0::2], "v": slots[1::2]}
        elif kind == "SGD" and len(slots) == len(params):
            state["slots"] = {"velocity": slots}
        else:
            return None  # slots whose order we cannot vouch for: the optimizer starts afresh
    elif state["iterations"] and optimizer.slot_names:
        state["iterations"] = 0  # a step count without its slots would mis-correct Adam's bias
    optimizer.check_state(state, params, source)
    return state


def optimizer_from_config(config: dict | None, source: str):
    """The optimizer of a ``compile_config`` (None: the default)."""
    if config is None:
        return None
    kind = config.get("class_name")
    settings = config.get("config", {})
    known = {name: cls for name, cls in vars(optimizers).items() if isinstance(cls, type)
             and issubclass(cls, optimizers.Optimizer) and cls is not optimizers.Optimizer}
    if kind not in known:
        raise ValueError(f"{source}: optimizer {kind!r} is not one tinyconv has ({sorted(known)})")
    chosen = {name: settings[name] for name in ("learning_rate", *OPTIMIZER_SETTINGS.get(kind, ()))
              if settings.get(name) is not None}
    if isinstance(chosen.get("learning_rate"), dict):
        raise ValueError(f"{source}: the optimizer's learning rate is a schedule "
                         f"({chosen['learning_rate'].get('class_name')}); tinyconv changes rates with callbacks "
                         "(LearningRateScheduler)")
    return known[kind](**chosen)


def loss_from_config(config, source: str):
    if isinstance(config, str):
        return losses.get(config)
    if isinstance(config, dict) and config.get("class_name") in ("BinaryCrossentropy", "CategoricalCrossentropy",
                                                                 "SparseCategoricalCrossentropy"):
        return getattr(losses, config["class_name"])(from_logits=config.get("config", {}).get("from_logits", False))
    raise ValueError(f"{source}: loss {config!r} is not one tinyconv has (binary, categorical and sparse "
                     "categorical cross-entropy)")
