"""Layers and models as Keras 3 describes them in a ``.keras`` file's ``config.json``, both ways.

Every layer both engines have is written with Keras's class name and the arguments that define it
(Keras fills the rest with its defaults when it reads the file); a Keras config is read back into
the tinyconv layer with the same arguments. Keras options tinyconv does not have (a dilation, a
constraint, ``channels_first``, ...) are refused when they are not at the value that means "off",
naming the layer and the option, and so are layers of either engine that the other lacks.
A functional model's graph is written as Keras writes it: each layer with its ``inbound_nodes``,
the tensors it was called on (``keras_history``: the producing layer's name, node 0, tensor 0).
"""
from __future__ import annotations

from .. import layers as L
from .. import regularizers
from ..layers.base import InputLayer

ACTIVATION_NAMES = {"ReLU": "relu", "Sigmoid": "sigmoid", "Softmax": "softmax", "Tanh": "tanh"}


# --- tinyconv -> Keras ---------------------------------------------------------------------------
def activation_name(function, owner: str) -> str:
    """Keras's name of a layer's ``activation=`` (``"linear"`` for none)."""
    if function is None:
        return "linear"
    name = ACTIVATION_NAMES.get(type(function).__name__)
    if name is None or (name == "softmax" and function.axis != -1):
        raise ValueError(f"{owner}: activation {type(function).__name__} has no Keras activation of the same "
                         "function (Keras's 'leaky_relu' has slope 0.2); use a LeakyReLU layer after it")
    return name


def regularizer_config(regularizer):
    if regularizer is None:
        return None
    return {"module": "keras.regularizers", "class_name": "L1L2",
            "config": {"l1": regularizer.l1, "l2": regularizer.l2}, "registered_name": None}


def _linear(layer, owner: str) -> dict:
    return {"activation": activation_name(layer.activation, owner), "use_bias": layer.use_bias,
            "kernel_regularizer": regularizer_config(layer.regularizers.get("kernel")),
            "bias_regularizer": regularizer_config(layer.regularizers.get("bias"))}


def _window(layer) -> dict:
    return {"strides": list(layer.strides), "padding": layer.padding, "data_format": "channels_last"}


EXPORT = {
    "Conv2D": lambda l, o: {"filters": l.filters, "kernel_size": list(l.kernel_size), **_window(l),
                            "dilation_rate": [1, 1], "groups": 1, **_linear(l, o)},
    "Conv2DTranspose": lambda l, o: {"filters": l.filters, "kernel_size": list(l.kernel_size), **_window(l),
                                     "dilation_rate": [1, 1], **_linear(l, o)},
    "Dense": lambda l, o: {"units": l.units, **_linear(l, o)},
    "MaxPooling2D": lambda l, o: {"pool_size": list(l.pool_size), **_window(l)},
    "AveragePooling2D": lambda l, o: {"pool_size": list(l.pool_size), **_window(l)},
    "GlobalAveragePooling2D": lambda l, o: {"data_format": "channels_last", "keepdims": False},
    "Flatten": lambda l, o: {"data_format": "channels_last"},
    "Dropout": lambda l, o: {"rate": l.rate, "seed": l.seed},
    "BatchNormalization": lambda l, o: {"axis": l.axis, "momentum": l.momentum, "epsilon": l.epsilon,
                                        "center": l.center, "scale": l.scale},
    "Activation": lambda l, o: {"activation": activation_name(l.function, o)},
    "Sigmoid": lambda l, o: {"activation": "sigmoid"},
    "Tanh": lambda l, o: {"activation": "tanh"},
    "LeakyReLU": lambda l, o: {"negative_slope": l.alpha},
    "ReLU": lambda l, o: {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
    "Softmax": lambda l, o: {"axis": l.axis},
    "Add": lambda l, o: {},
    "Concatenate": lambda l, o: {"axis": l.axis},
    "UpSampling2D": lambda l, o: {"size": list(l.size), "data_format": "channels_last",
                                  "interpolation": l.interpolation},
    "Reshape": lambda l, o: {"target_shape": list(l.target_shape)},
    "Rescaling": lambda l, o: {"scale": l.scale, "offset": l.offset},
    # given statistics are configuration, adapted ones weights (mean, variance, count), as in Keras
    "Normalization": lambda l, o: {"axis": [-1], "invert": False,
                                   "mean": None if l.given is None else l.given[0].tolist(),
                                   "variance": None if l.given is None else l.given[1].tolist()},
}
KERAS_CLASS = {"Sigmoid": "Activation", "Tanh": "Activation"}  # a bare activation layer is Keras's Activation


def layer_config(layer) -> dict:
    """``{"module", "class_name", "config", "registered_name"}`` of one layer, as Keras 3 writes it."""
    kind = type(layer).__name__
    owner = f"layer {layer.name!r} ({kind})"
    if isinstance(layer, InputLayer):
        config = {"batch_shape": [None, *layer.input_shape], "dtype": "float32", "sparse": False, "name": layer.name}
        return {"module": "keras.layers", "class_name": "InputLayer", "config": config, "registered_name": None}
    if kind not in EXPORT:
        raise ValueError(f"{owner}: Keras has no layer of this kind, so the model cannot be written in Keras's "
                         f"format; the layers both engines have: {sorted(EXPORT)}")
    config = {"name": layer.name, "trainable": True, "dtype": "float32", **EXPORT[kind](layer, owner)}
    return {"module": "keras.layers", "class_name": KERAS_CLASS.get(kind, kind), "config": config,
            "registered_name": None}


def model_config(model) -> dict:
    """The model's entry of ``config.json``: a ``Sequential`` or a ``Functional`` graph."""
    graph = model.graph_layers
    if type(model).__name__ == "Sequential":
        config = {"name": model.name, "trainable": True, "dtype": "float32",
                  "layers": [layer_config(layer) for layer in graph],
                  "build_input_shape": [None, *graph[0].input_shape]}
        return {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None,
                "build_config": {"input_shape": [None, *graph[0].input_shape]}}
    entries = []
    for layer, sources in zip(graph, model.inbound):
        entry = layer_config(layer)
        tensors = [_keras_tensor(graph[j]) for j in sources]
        args = [tensors] if len(tensors) > 1 else tensors
        entry.update(name=layer.name, inbound_nodes=[{"args": args, "kwargs": {}}] if tensors else [])
        entries.append(entry)
    config = {"name": model.name, "trainable": True, "layers": entries,
              "input_layers": [graph[0].name, 0, 0], "output_layers": [graph[-1].name, 0, 0]}
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": config,
            "registered_name": "Functional", "build_config": {"input_shape": None}}


def _keras_tensor(layer) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None, *layer.output_shape], "dtype": "float32", "keras_history": [layer.name, 0, 0]}}


# --- Keras -> tinyconv ---------------------------------------------------------------------------
def _off(config: dict, owner: str, **off) -> None:
    """Refuse a Keras option tinyconv does not have unless it is at its "off" value(s)."""
    for key, allowed in off.items():
        allowed = allowed if isinstance(allowed, tuple) else (allowed,)
        if key in config and config[key] not in allowed:
            raise ValueError(f"{owner}: Keras's {key}={config[key]!r} has no tinyconv equivalent "
                             f"(tinyconv reads only {allowed[0]!r})")


def _regularizer(value, owner: str):
    if value is None:
        return None
    if isinstance(value, dict) and value.get("class_name") in ("L1L2", "L1", "L2"):
        config = value.get("config", {})
        return regularizers.L1L2(l1=config.get("l1", 0.0), l2=config.get("l2", 0.0))
    raise ValueError(f"{owner}: regularizer {value!r} is not one tinyconv has (L1, L2, L1L2)")


def _activation(value, owner: str):
    name = value.get("config") if isinstance(value, dict) else value
    if name in (None, "linear"):
        return None
    if name not in ("relu", "sigmoid", "softmax", "tanh"):
        raise ValueError(f"{owner}: activation {name!r} is not one tinyconv has (relu, sigmoid, softmax, tanh)")
    return name


def _linear_arguments(config: dict, owner: str) -> dict:
    _off(config, owner, data_format=("channels_last", None), dilation_rate=([1, 1], 1, (1, 1)), groups=1,
         activity_regularizer=None, kernel_constraint=None, bias_constraint=None, output_padding=None,
         lora_rank=None, quantization_config=None)
    return {"activation": _activation(config.get("activation"), owner), "use_bias": config.get("use_bias", True),
            "kernel_regularizer": _regularizer(config.get("kernel_regularizer"), owner),
            "bias_regularizer": _regularizer(config.get("bias_regularizer"), owner), "name": config["name"]}


def _pool(cls, config, owner):
    _off(config, owner, data_format=("channels_last", None))
    return cls(config.get("pool_size", (2, 2)), strides=config.get("strides"), padding=config.get("padding", "valid"),
               name=config["name"])


IMPORT = {
    "Conv2D": lambda c, o: L.Conv2D(c["filters"], c["kernel_size"], strides=c.get("strides", (1, 1)),
                                    padding=c.get("padding", "valid"), **_linear_arguments(c, o)),
    "Conv2DTranspose": lambda c, o: L.Conv2DTranspose(c["filters"], c["kernel_size"], strides=c.get("strides", (1, 1)),
                                                      padding=c.get("padding", "valid"), **_linear_arguments(c, o)),
    "Dense": lambda c, o: L.Dense(c["units"], **_linear_arguments(c, o)),
    "MaxPooling2D": lambda c, o: _pool(L.MaxPooling2D, c, o),
    "AveragePooling2D": lambda c, o: _pool(L.AveragePooling2D, c, o),
    "GlobalAveragePooling2D": lambda c, o: (_off(c, o, data_format=("channels_last", None), keepdims=False),
                                            L.GlobalAveragePooling2D(name=c["name"]))[1],
    "Flatten": lambda c, o: (_off(c, o, data_format=("channels_last", None)), L.Flatten(name=c["name"]))[1],
    "Dropout": lambda c, o: (_off(c, o, noise_shape=None), L.Dropout(c["rate"], seed=c.get("seed"), name=c["name"]))[1],
    "BatchNormalization": lambda c, o: (_off(c, o, synchronized=False, renorm=False, beta_constraint=None,
                                             gamma_constraint=None, beta_regularizer=None, gamma_regularizer=None),
                                        L.BatchNormalization(axis=c.get("axis", -1), momentum=c.get("momentum", 0.99),
                                                             epsilon=c.get("epsilon", 1e-3),
                                                             center=c.get("center", True), scale=c.get("scale", True),
                                                             name=c["name"]))[1],
    "Activation": lambda c, o: L.Activation(_activation(c["activation"], o) or "linear", name=c["name"]),
    "LeakyReLU": lambda c, o: L.LeakyReLU(negative_slope=c.get("negative_slope", c.get("alpha", 0.3)), name=c["name"]),
    "ReLU": lambda c, o: (_off(c, o, max_value=None, negative_slope=0.0, threshold=0.0), L.ReLU(name=c["name"]))[1],
    "Softmax": lambda c, o: L.Softmax(axis=c.get("axis", -1), name=c["name"]),
    "Add": lambda c, o: L.Add(name=c["name"]),
    "Concatenate": lambda c, o: L.Concatenate(axis=c.get("axis", -1), name=c["name"]),
    "UpSampling2D": lambda c, o: (_off(c, o, data_format=("channels_last", None)),
                                  L.UpSampling2D(c.get("size", (2, 2)), interpolation=c.get("interpolation", "nearest"),
                                                 name=c["name"]))[1],
    "Reshape": lambda c, o: L.Reshape(tuple(c["target_shape"]), name=c["name"]),
    "Rescaling": lambda c, o: L.Rescaling(c["scale"], offset=c.get("offset", 0.0), name=c["name"]),
    "Normalization": lambda c, o: (_off(c, o, axis=([-1], -1, (-1,)), invert=False),
                                   L.Normalization(mean=c.get("mean"), variance=c.get("variance"), name=c["name"]))[1],
}


def layer_from_config(entry: dict, source: str):
    """A tinyconv layer from one Keras layer entry (unbuilt; an InputLayer entry gives its shape)."""
    kind, config = entry.get("class_name"), entry.get("config", {})
    owner = f"{source}: layer {config.get('name')!r} ({kind})"
    if kind == "InputLayer":
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        return L.Input(tuple(shape[1:]), name=config.get("name"))
    if kind not in IMPORT:
        raise ValueError(f"{owner}: tinyconv has no layer of this kind; the Keras layers it reads: {sorted(IMPORT)}")
    return IMPORT[kind](config, owner)


def histories(node) -> list:
    """The ``keras_history`` of every tensor a node was called on, in order."""
    found = []

    def visit(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            found.append(value["config"]["keras_history"])
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
    visit(node.get("args", []) if isinstance(node, dict) else node)
    return found
