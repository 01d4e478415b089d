"""Keras's module for whole-model files (``keras.saving`` -> ``tinyconv.saving``; ``load_model`` is
also ``tinyconv.models.load_model``): ``.keras`` archives in Keras 3's format, both ways.

``model.save("m.keras")`` writes one (``storage/keras_file.py``); ``load_model("m.keras")`` reads a
file written by tinyconv or by Keras 3: the architecture, the weights, and, when the file has them,
the compile settings (the model comes back compiled) and the optimizer's state.
"""
from __future__ import annotations

import io
import os

from .layers.base import SymbolicTensor
from .model import Model, Sequential
from .storage import keras_file
from .storage.keras_config import histories, layer_from_config


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """The model of a ``.keras`` file; ``compile=False`` leaves it uncompiled. (``custom_objects`` and
    ``safe_mode`` are Keras's: tinyconv files hold no code, so there is nothing to allow.)"""
    source = os.fspath(filepath)
    if not source.endswith(".keras"):
        raise ValueError(f"load_model: {source}: expected a .keras file (Keras 3's format); a .weights.h5 or "
                         ".npz file holds weights only: build the model, then model.load_weights(path)")
    if custom_objects:
        raise ValueError("load_model: custom_objects: tinyconv reads only the layers it has; a custom Keras layer "
                         "cannot be loaded")
    document, weights = keras_file.read_archive(source)
    model = model_from_config(document, source)
    compiled = document.get("compile_config")
    if compile and compiled:
        model.compile(optimizer=keras_file.optimizer_from_config(compiled.get("optimizer"), source) or "rmsprop",
                      loss=keras_file.loss_from_config(compiled.get("loss"), source),
                      metrics=[m for m in compiled.get("metrics") or [] if isinstance(m, str)])
    keras_file.load_weights(model, io.BytesIO(weights), source)
    return model


def model_from_config(document: dict, source: str) -> Model:
    """A tinyconv ``Sequential`` or functional ``Model`` from a ``config.json`` document."""
    kind, config = document.get("class_name"), document.get("config", {})
    if kind == "Sequential":
        built = [layer_from_config(entry, source) for entry in config["layers"]]
        if not isinstance(built[0], SymbolicTensor):
            shape = config.get("build_input_shape") or document.get("build_config", {}).get("input_shape")
            if shape is None:
                raise ValueError(f"{source}: the Sequential model has no input shape (it was never built)")
            built.insert(0, layer_from_config({"class_name": "InputLayer", "config": {"batch_shape": shape}}, source))
        return Sequential(built, name=config.get("name"))
    if kind not in ("Functional", "Model"):
        raise ValueError(f"{source}: a {kind!r} model; tinyconv reads Sequential and functional models")
    ends = {}
    for key in ("input_layers", "output_layers"):
        entry = config[key]
        if isinstance(entry[0], list):
            if len(entry) != 1:
                raise ValueError(f"{source}: the model has {len(entry)} {key.split('_')[0]}s; tinyconv's models "
                                 "have one input and one output")
            entry = entry[0]
        ends[key] = entry[0]
    tensors = {}
    for entry in config["layers"]:
        layer = layer_from_config(entry, source)
        name = entry.get("name") or entry["config"]["name"]
        if isinstance(layer, SymbolicTensor):
            tensors[name] = layer
            continue
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) != 1:
            raise ValueError(f"{source}: layer {name!r} is called {len(nodes)} times; tinyconv calls each layer once")
        inputs = [tensors[history[0]] for history in histories(nodes[0])]
        tensors[name] = layer(inputs if len(inputs) > 1 else inputs[0])
    return Model(tensors[ends["input_layers"]], tensors[ends["output_layers"]], name=config.get("name"))
