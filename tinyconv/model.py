"""Model (functional graph) and Sequential: whole-network forward and explicit backward.

``graph_layers`` holds every layer in topological order, the ``InputLayer`` first, and
``inbound[i]`` the positions of layer i's inputs: the passes, the summary and the weights file
work on these positions. ``layers`` is Keras's list (a Sequential's leaves its InputLayer out).

``forward`` runs the layers in order; ``backward`` runs them in reverse, each turning
``dL/d(output)`` into ``dL/d(input)`` and filling its parameter gradients. Training methods
(``compile``, ``fit``, ``evaluate``, ``predict``) come from ``training.Trainable``.
"""
from __future__ import annotations

import os

import numpy as np

from . import arguments, backend, config
from .training import checkpoint
from .layers.base import Input, InputLayer, Layer, SymbolicTensor, snake_case, unique_name
from .layers.linear import LinearLayer
from .layers.merge import Merge
from .diagnostics.summary import print_summary
from .storage import keras_file, onnx_export
from .storage import weights as weights_file
from .training.loop import Trainable


class Model(Trainable):
    """A network of layers from ``Input`` to outputs (Keras's functional model).

    ``Model(inputs, outputs)`` follows the graph from the outputs back to the inputs. A subclass
    that brings its own layers (``Sequential``, ``tinyconv.gan.GAN``) calls ``Model.__init__`` with
    ``name`` alone and sets ``layers`` itself; it may override ``train_step`` (see docs/custom-training.md).
    """

    def __init__(self, inputs: SymbolicTensor | None = None, outputs: SymbolicTensor | None = None,
                 name: str | None = None):
        default = unique_name(snake_case(type(self).__name__))
        if inputs is None and outputs is None and type(self) is not Model:
            self.name = arguments.object_name(name, "name", type(self).__name__) if name is not None else default
            self.graph_layers: list[Layer] = []
            self.set_plan([])
            super().__init__()
            return
        for what, tensor in (("inputs", inputs), ("outputs", outputs)):
            if not isinstance(tensor, SymbolicTensor):
                raise TypeError(f"Model: {what} must be a symbolic tensor from Input(...) or a layer call, "
                                f"got {type(tensor).__name__}")
        if not isinstance(inputs.layer, InputLayer):
            raise TypeError(f"Model: inputs must come from Input(...), got the output of layer {inputs.layer.name!r}")
        tensors = topological_order(inputs, outputs)
        position = {id(tensor): i for i, tensor in enumerate(tensors)}
        self.graph_layers: list[Layer] = [tensor.layer for tensor in tensors]
        self.name = arguments.object_name(name, "name", "Model") if name is not None else default
        check_unique_names(self.graph_layers, f"model {self.name!r}")
        self.set_plan([[position[id(source)] for source in tensor.inputs] for tensor in tensors])
        super().__init__()

    @property
    def layers(self) -> list[Layer]:
        """The layers, as Keras lists them: a functional model's from its ``InputLayer`` on (in
        ``graph_layers``' order), a Sequential's without it."""
        return self.graph_layers

    def set_plan(self, inbound: list[list[int]]) -> None:
        """Precompute how to run the graph: ``inbound[i]`` lists the positions (in ``layers``) of
        the layers whose outputs layer i takes. A plain chain keeps the simplest loop."""
        self.inbound = inbound
        self.chain = all(sources == [i - 1] for i, sources in enumerate(inbound) if i > 0)
        last_use = {}
        for i, sources in enumerate(inbound):
            for j in sources:
                last_use[j] = i
        # After layer i has run, the outputs it was the last to read can be let go.
        self.release_after = [[j for j, last in last_use.items() if last == i] for i in range(len(inbound))]

    # --- shapes -----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple:
        return (None, *self.graph_layers[0].input_shape)

    @property
    def output_shape(self) -> tuple:
        return (None, *self.graph_layers[-1].output_shape)

    @property
    def dtype(self) -> np.dtype:
        params = self.trainable_params()
        return np.dtype(params[0].dtype) if params else config.float_dtype()

    # --- explicit backprop ---------------------------------------------------------------------
    @property
    def array_module(self):
        """numpy or cupy: where this model's parameters live (the current device if it has none)."""
        params = self.trainable_params()
        return backend.get_array_module(params[0]) if params else backend.device_module()

    def to_model_device(self, a):
        """An array on the model's device, in the model's dtype (no copy when it is already there)."""
        xp = self.array_module
        # to_numpy only for a device array: on the host it is the read-back a training step counts.
        return xp.asarray(backend.to_numpy(a) if xp is np and backend.is_gpu_array(a) else a, dtype=self.dtype)

    def prepare_input(self, x):
        """Check that a batch is numeric and move it to the model's device and dtype."""
        if not hasattr(x, "dtype") or x.dtype.kind not in "fiu":
            raise TypeError(f"model {self.name!r}: expected a numeric array of images, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        return self.to_model_device(x)

    def forward(self, x, training: bool = False, keep_caches: bool = True):
        """(N, *input_shape) -> (N, *output_shape).

        Each layer keeps what its backward needs; with ``keep_caches=False`` (``predict``,
        ``evaluate``: no backward follows) it lets that go as soon as the next layer has its input,
        so that a forward holds about two layers' arrays at a time instead of the whole network's.
        """
        return self.run_layers(self.prepare_input(x), len(self.graph_layers), training, keep_caches)

    def run_layers(self, x, count: int, training: bool = False, keep_caches: bool = True):
        """Run the first ``count`` layers (in topological order) on the model input ``x``;
        returns the output of layer ``count - 1``."""
        if self.chain:
            for layer in self.graph_layers[:count]:
                x = layer.forward(x, training)
                if not keep_caches:
                    layer.release_cache()
            return x
        outputs = [None] * count
        for i in range(count):
            layer, sources = self.graph_layers[i], self.inbound[i]
            if not sources:
                outputs[i] = layer.forward(x, training)
            elif isinstance(layer, Merge):
                outputs[i] = layer.forward([outputs[j] for j in sources], training)
            else:
                outputs[i] = layer.forward(outputs[sources[0]], training)
            if not keep_caches:
                layer.release_cache()
            for j in self.release_after[i]:
                if j != count - 1:
                    outputs[j] = None
        return outputs[count - 1]

    def image_shape(self) -> tuple | None:
        """The shape of one image ``fit``, ``evaluate`` and ``predict`` take (None until a Sequential
        without Input is built)."""
        return self.graph_layers[0].input_shape if self.graph_layers else None

    def forward_logits(self, x, training: bool = False, keep_caches: bool = True):
        """Forward pass that stops before the final sigmoid or softmax: returns its input z
        (``keep_caches`` as in ``forward``)."""
        # The last layer reads the one before it (see model.topological_order).
        x = self.run_layers(self.prepare_input(x), len(self.graph_layers) - 1, training, keep_caches)
        z = self.graph_layers[-1].forward_logits(x, training)
        if not keep_caches:
            self.graph_layers[-1].release_cache()
        return z

    def backward_logits(self, dz, input_gradient: bool = True):
        """Backward pass from dL/dz, the gradient at the final activation's input (see ``backward``)."""
        *body, last = self.graph_layers
        return self.backward_layers(body, last.backward_logits(dz), input_gradient)

    def backward(self, dy, input_gradient: bool = True):
        """dL/d(output) -> dL/d(input); fills every layer's ``grads``.

        With ``input_gradient=False`` (what training uses) it returns None, and a first Conv2D or
        Dense skips computing dL/d(input), which no parameter needs: for a first convolution
        that is one matrix product and a col2im saved per step.
        """
        return self.backward_layers(self.graph_layers, dy, input_gradient)

    def backward_layers(self, layers, dy, input_gradient: bool = True):
        """Backward through ``layers``, the first ones of ``self.graph_layers`` (all, or all but the
        last for ``backward_logits``), from ``dy``, the gradient at the last one's output;
        see ``backward``.

        In a graph, a tensor that feeds several layers receives one gradient from each of them,
        and its total gradient is their sum (the multivariate chain rule):
        ``dL/dt = sum over the consumers c of dL/dc_input``.
        """
        if self.chain:
            first = next((layer for layer in self.graph_layers if not isinstance(layer, InputLayer)), None)
            for layer in reversed(layers):
                if layer is first and not input_gradient:
                    skip_input_gradient(layer, dy)
                    return None
                dy = layer.backward(dy)
            return dy if input_gradient else None
        gradients = [None] * len(layers)
        gradients[-1] = dy
        for i in range(len(layers) - 1, 0, -1):  # position 0 is the InputLayer
            layer, sources, dy = self.graph_layers[i], self.inbound[i], gradients[i]
            gradients[i] = None
            if not input_gradient and all(j == 0 for j in sources):
                skip_input_gradient(layer, dy)  # it reads the model input only: nobody needs its dx
                continue
            upstream = layer.backward(dy)
            for j, dx in zip(sources, upstream if isinstance(layer, Merge) else [upstream]):
                # A new array, never +=: dx may be the very array another layer was given.
                gradients[j] = dx if gradients[j] is None else gradients[j] + dx
        return gradients[0] if input_gradient else None

    def output_layer(self) -> Layer | None:
        """The layer that makes the model's output (None for a model with no layers yet)."""
        return self.graph_layers[-1] if self.graph_layers else None

    def require_built(self, what: str) -> None:
        """A Sequential without an Input learns its shapes from its first batch; until then its
        weights do not exist."""

    # --- parameters -----------------------------------------------------------------------------
    def trainable_params(self) -> list:
        return [p for layer in self.graph_layers for p in layer.params.values()]

    def gradients(self) -> list:
        return [g for layer in self.graph_layers for g in layer.grads.values()]

    def count_params(self) -> int:
        """Every weight, trainable or not (as Keras's total)."""
        self.require_built("count_params")
        return sum(layer.count_params() for layer in self.graph_layers)

    def count_trainable_params(self) -> int:
        return sum(layer.count_trainable_params() for layer in self.graph_layers)

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's ``get_weights()`` in turn: trainable and non-trainable (moving statistics)."""
        return [w for layer in self.graph_layers for w in layer.get_weights()]

    def set_weights(self, weights: list) -> None:
        expected = sum(len(layer.weights) for layer in self.graph_layers)
        if len(weights) != expected:
            raise ValueError(f"model {self.name!r}: expected {expected} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.graph_layers:
            layer.set_weights(weights[i:i + len(layer.weights)])
            i += len(layer.weights)

    # --- files: weights (storage/weights.py, storage/keras_file.py) and whole models ---------------------
    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """Write the weights atomically (a kill mid-write leaves the old file intact): ``.weights.h5`` in
        Keras 3's layout (with the optimizer's state), any other name as tinyconv's ``.npz``."""
        self.require_built("save_weights")
        _check_overwrite(filepath, overwrite, "save_weights")
        if _weights_format(filepath, "save_weights") == "keras":
            keras_file.save_weights(self, filepath)
        else:
            weights_file.save_weights(self, filepath)

    def load_weights(self, filepath: str | os.PathLike) -> None:
        """Read weights written by ``save_weights`` (or by Keras 3, for ``.weights.h5``); everything is
        checked before any layer changes."""
        self.require_built("load_weights")
        if _weights_format(filepath, "load_weights") == "keras":
            if not os.path.exists(filepath):
                raise FileNotFoundError(f"load_weights: {os.fspath(filepath)}: no such weights file")
            keras_file.load_weights(self, os.fspath(filepath), source=os.fspath(filepath))
        else:
            weights_file.load_weights(self, filepath)

    def save(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """The whole model (architecture, weights, compile settings, optimizer state) as a ``.keras``
        file, Keras 3's format: ``tinyconv.models.load_model`` and Keras 3's read it."""
        self.require_built("save")
        path = os.fspath(filepath)
        if not path.endswith(".keras"):
            raise ValueError(f"save: {path}: a whole model is saved as a .keras file (Keras 3's format; Keras 2's "
                             ".h5 models are not written); for weights alone use save_weights")
        _check_overwrite(path, overwrite, "save")
        keras_file.save_model(self, path)

    def export(self, filepath: str | os.PathLike, format: str = "onnx", verbose=None) -> None:
        """The model for inference elsewhere: ``format="onnx"`` writes an ONNX graph (NHWC in and out;
        storage/onnx_export.py). Keras's other formats (TensorFlow SavedModel, ...) need TensorFlow."""
        self.require_built("export")
        if format != "onnx":
            raise ValueError(f"export: format={format!r}: tinyconv exports 'onnx' (Keras's 'tf_saved_model' and "
                             "'openvino' need TensorFlow or OpenVINO); use format='onnx'")
        onnx_export.export(self, filepath)

    # --- training checkpoints (see checkpoint.py) -----------------------------------------------------
    def training_state(self) -> dict:
        """The weights and the optimizer's state, for a training checkpoint."""
        return checkpoint.model_state(self)

    def check_training_state(self, state: dict, source: str):
        """Every check of ``set_training_state``, changing nothing."""
        return checkpoint.check_model_state(state, self, source)

    def set_training_state(self, state: dict, checked) -> None:
        checkpoint.set_model_state(state, self, checked)

    # --- summary (the table: diagnostics/summary.py) ---------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None, batch_size=None) -> None:
        """Keras's table of the layers, with each one's receptive field (arguments as Keras's:
        see diagnostics/summary.py); ``batch_size`` adds each layer's FLOPs and output bytes."""
        self.require_built("summary")
        print_summary(self, line_length, positions, print_fn, expand_nested, show_trainable, layer_range,
                      batch_size)


class Sequential(Model):
    """A plain stack: ``Sequential([Input((32, 32, 3)), Conv2D(...), ...])``.

    The input shape comes from a leading ``Input``, from ``input_shape=`` on the first layer, or
    from the first batch passed to ``forward``.
    """

    def __init__(self, layers: list | None = None, name: str | None = None):
        super().__init__(name=name)
        self.pending: list[Layer] = []
        self.input_tensor = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            if self.input_tensor is not None or self.pending:
                raise ValueError(f"model {self.name!r}: Input(...) must come first, and only once")
            self.input_tensor = self.output_tensor = layer
            self.graph_layers = [layer.layer]
            self.set_plan([[]])
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"model {self.name!r}: expected a Layer, got {type(layer).__name__}")
        check_unique_names([*self.graph_layers, *self.pending, layer], f"model {self.name!r}")
        if self.input_tensor is None and layer.declared_input_shape is not None and not self.pending:
            self.add(Input(layer.declared_input_shape))
        if self.input_tensor is None:
            self.pending.append(layer)  # built when the first batch shows the input shape
            return
        self.output_tensor = layer(self.output_tensor)
        self.graph_layers.append(layer)
        self.set_plan(self.inbound + [[len(self.graph_layers) - 2]])

    @property
    def layers(self) -> list[Layer]:
        """Keras's list: the layers added, without the ``InputLayer`` (which ``graph_layers`` starts with)."""
        return [*self.graph_layers[1:], *self.pending] if self.graph_layers else list(self.pending)

    def output_layer(self) -> Layer | None:
        return self.pending[-1] if self.pending else super().output_layer()

    def require_built(self, what: str) -> None:
        if self.pending:
            raise ValueError(f"model {self.name!r}: {what} needs the model built, and it has no Input yet, so its "
                             "shapes come from its first batch: call fit, predict or forward once first, or start "
                             "it with Input(shape) (or input_shape= on its first layer)")

    def build(self, input_shape: tuple) -> None:
        pending, self.pending = self.pending, []
        self.add(Input(input_shape))
        for layer in pending:
            self.add(layer)

    def prepare_input(self, x):
        """The first batch of a model without an Input builds it (as Keras does)."""
        if self.input_tensor is None and hasattr(x, "shape"):
            self.build(tuple(x.shape[1:]))
        return super().prepare_input(x)


def _weights_format(filepath, owner: str) -> str:
    """``"keras"`` for a ``.weights.h5`` name, ``"npz"`` otherwise; a bare ``.h5`` is Keras 2's, refused."""
    path = os.fspath(filepath)
    if path.endswith(".weights.h5"):
        return "keras"
    if path.endswith((".h5", ".hdf5")):
        raise ValueError(f"{owner}: {path}: Keras 3 names its HDF5 weights files '*.weights.h5' (Keras 2's .h5 "
                         "layout is not written or read); use that suffix, or .npz for tinyconv's own format")
    return "npz"


def _check_overwrite(filepath, overwrite: bool, owner: str) -> None:
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{owner}: {os.fspath(filepath)} exists and overwrite=False")


def check_unique_names(layers: list[Layer], owner: str) -> None:
    """Keras's rule: a model's layers have distinct names (checkpoints find seeded layers by name)."""
    seen = set()
    for layer in layers:
        if layer.name in seen:
            raise ValueError(f"{owner}: two layers are named {layer.name!r}; layer names must be unique "
                             "within a model (rename one with name=...)")
        seen.add(layer.name)


def topological_order(inputs: SymbolicTensor, outputs: SymbolicTensor) -> list[SymbolicTensor]:
    """The tensors that ``outputs`` is computed from, each after the ones it reads (depth-first,
    inputs in call order, so a chain comes out in its own order and ``inputs`` first).

    Every layer is called once, so tensors and layers correspond one to one. Iterative, so that
    a deep network does not exhaust Python's recursion limit.
    """
    order: list[SymbolicTensor] = []
    seen: set[int] = set()
    stack = [(outputs, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if not tensor.inputs and tensor is not inputs:
            raise ValueError(f"Model: the outputs depend on {tensor!r}, which is not the given inputs "
                             "(one Input per model)")
        stack.append((tensor, True))
        stack.extend((source, False) for source in reversed(tensor.inputs))
    if id(inputs) not in seen:
        raise ValueError("Model: the outputs are not computed from the given inputs")
    return order


def skip_input_gradient(layer: Layer, dy) -> None:
    """Backward through a layer that reads the model input: its parameter gradients only."""
    if isinstance(layer, LinearLayer):
        layer.backward(dy, input_gradient=False)
    else:
        layer.backward(dy)  # a parameter-free layer: nothing to skip
