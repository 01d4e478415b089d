"""Model (functional graph) and Sequential: whole-network forward and explicit backward.

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
from .storage.npzfile import read_npz, write_npz_atomically
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
            self.layers: list[Layer] = []
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
        self.layers: list[Layer] = [tensor.layer for tensor in tensors]
        self.name = arguments.object_name(name, "name", "Model") if name is not None else default
        check_unique_names(self.layers, f"model {self.name!r}")
        self.set_plan([[position[id(source)] for source in tensor.inputs] for tensor in tensors])
        super().__init__()

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
        return (None, *self.layers[0].input_shape)

    @property
    def output_shape(self) -> tuple:
        return (None, *self.layers[-1].output_shape)

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

    def forward(self, x, training: bool = False):
        """(N, *input_shape) -> (N, *output_shape)."""
        return self.run_layers(self.prepare_input(x), len(self.layers), training)

    def run_layers(self, x, count: int, training: bool = False):
        """Run the first ``count`` layers (in topological order) on the model input ``x``;
        returns the output of layer ``count - 1``."""
        if self.chain:
            for layer in self.layers[:count]:
                x = layer.forward(x, training)
            return x
        outputs = [None] * count
        for i in range(count):
            layer, sources = self.layers[i], self.inbound[i]
            if not sources:
                outputs[i] = layer.forward(x, training)
            elif isinstance(layer, Merge):
                outputs[i] = layer.forward([outputs[j] for j in sources], training)
            else:
                outputs[i] = layer.forward(outputs[sources[0]], training)
            for j in self.release_after[i]:
                if j != count - 1:
                    outputs[j] = None
        return outputs[count - 1]

    def image_shape(self) -> tuple | None:
        """The shape of one image ``fit``, ``evaluate`` and ``predict`` take (None until a Sequential
        without Input is built)."""
        return self.layers[0].input_shape if self.layers else None

    def forward_logits(self, x, training: bool = False):
        """Forward pass that stops before the final sigmoid or softmax: returns its input z."""
        # The last layer reads the one before it (see model.topological_order).
        x = self.run_layers(self.prepare_input(x), len(self.layers) - 1, training)
        return self.layers[-1].forward_logits(x, training)

    def backward_logits(self, dz, input_gradient: bool = True):
        """Backward pass from dL/dz, the gradient at the final activation's input (see ``backward``)."""
        *body, last = self.layers
        return self.backward_layers(body, last.backward_logits(dz), input_gradient)

    def backward(self, dy, input_gradient: bool = True):
        """dL/d(output) -> dL/d(input); fills every layer's ``grads``.

        With ``input_gradient=False`` (what training uses) it returns None, and a first Conv2D or
        Dense skips computing dL/d(input), which no parameter needs: for a first convolution
        that is one matrix product and a col2im saved per step.
        """
        return self.backward_layers(self.layers, dy, input_gradient)

    def backward_layers(self, layers, dy, input_gradient: bool = True):
        """Backward through ``layers``, the first ones of ``self.layers`` (all, or all but the
        last for ``backward_logits``), from ``dy``, the gradient at the last one's output;
        see ``backward``.

        In a graph, a tensor that feeds several layers receives one gradient from each of them,
        and its total gradient is their sum (the multivariate chain rule):
        ``dL/dt = sum over the consumers c of dL/dc_input``.
        """
        if self.chain:
            first = next((layer for layer in self.layers if not isinstance(layer, InputLayer)), None)
            for layer in reversed(layers):
                if layer is first and not input_gradient:
                    skip_input_gradient(layer, dy)
                    return None
                dy = layer.backward(dy)
            return dy if input_gradient else None
        gradients = [None] * len(layers)
        gradients[-1] = dy
        for i in range(len(layers) - 1, 0, -1):  # position 0 is the InputLayer
            layer, sources, dy = self.layers[i], self.inbound[i], gradients[i]
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
        return self.layers[-1] if self.layers else None

    def require_built(self, what: str) -> None:
        """A Sequential without an Input learns its shapes from its first batch; until then its
        weights do not exist."""

    # --- parameters -----------------------------------------------------------------------------
    def trainable_params(self) -> list:
        return [p for layer in self.layers for p in layer.params.values()]

    def gradients(self) -> list:
        return [g for layer in self.layers for g in layer.grads.values()]

    def count_params(self) -> int:
        """Every weight, trainable or not (as Keras's total)."""
        self.require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def count_trainable_params(self) -> int:
        return sum(layer.count_trainable_params() for layer in self.layers)

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's ``get_weights()`` in turn: trainable and non-trainable (moving statistics)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: list) -> None:
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"model {self.name!r}: expected {expected} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            layer.set_weights(weights[i:i + len(layer.weights)])
            i += len(layer.weights)

    # --- weights on disk -------------------------------------------------------------------------
    def weight_arrays(self) -> dict[str, np.ndarray]:
        """``{"<index>/<layer name>/<param>": array}``: position first, so names need not match on load."""
        return {f"{i:03d}/{layer.name}/{key}": backend.to_numpy(value)
                for i, layer in enumerate(self.layers) for key, value in layer.weights.items()}

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the weights to ``path`` (.npz) atomically: a kill mid-write leaves the old file intact."""
        self.require_built("save_weights")
        write_npz_atomically(path, self.weight_arrays())

    def load_weights(self, path: str | os.PathLike) -> None:
        """Read weights written by ``save_weights``; everything is checked before any layer changes."""
        self.require_built("load_weights")
        self.set_weight_arrays(read_npz(path), source=str(path))

    def set_weight_arrays(self, arrays: dict[str, np.ndarray], source: str) -> None:
        """Load ``weight_arrays()``-style data after checking it fits this model, layer by layer."""
        saved = self.check_weight_arrays(arrays, source)
        for i, layer in enumerate(self.layers):
            if layer.weights:
                layer.set_weights([saved[i][k] for k in layer.weights])

    def check_weight_arrays(self, arrays: dict[str, np.ndarray], source: str) -> dict[int, dict[str, np.ndarray]]:
        """Raise ``ValueError`` naming ``source`` unless ``arrays`` fit this model (shapes layer by
        layer, finite floating-point values); returns them by layer index and parameter name."""
        if checkpoint.STATE_KEY in arrays:
            raise ValueError(f"{source}: this is a training checkpoint, not a weights file; restore it with "
                             "tinyconv.checkpoint.load_checkpoint(path, model, callbacks)")
        saved: dict[int, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            parts = key.split("/")
            if len(parts) != 3 or not parts[0].isdigit():
                raise ValueError(f"{source}: not a tinyconv weights file: its entry {key!r} is not named "
                                 "'<layer index>/<layer name>/<parameter>' as model.save_weights writes them")
            saved.setdefault(int(parts[0]), {})[parts[2]] = value
        for i, layer in enumerate(self.layers):
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
        extra = sorted(set(saved) - set(range(len(self.layers))))
        if extra:
            raise ValueError(f"{source}: the file has weights for {len(self.layers) + len(extra)} layers "
                             f"or more, this model has {len(self.layers)}")
        return saved

    # --- training checkpoints (see checkpoint.py) -----------------------------------------------------
    def training_state(self) -> dict:
        """The weights and the optimizer's state, for a training checkpoint."""
        return checkpoint.model_state(self)

    def check_training_state(self, state: dict, source: str):
        """Every check of ``set_training_state``, changing nothing."""
        return checkpoint.check_model_state(state, self, source)

    def set_training_state(self, state: dict, checked) -> None:
        checkpoint.set_model_state(state, self, checked)

    # --- summary -----------------------------------------------------------------------------------
    def summary(self, print_fn=print) -> None:
        """A Keras-like table with a receptive-field column (the input region one output pixel sees).

        A graph also gets Keras's "Connected to" column (``name[0][0]``: the layers whose outputs
        a layer takes). A merge sees as far as the farthest-seeing of its branches.
        """
        self.require_built("summary")
        fields = []
        rows = []
        for layer, sources in zip(self.layers, self.inbound):
            inputs = [fields[j] for j in sources]
            field = layer.receptive_field(inputs if isinstance(layer, Merge) else (inputs or [None])[0])
            fields.append(field)
            rf = "whole input" if field is None else f"{field[0]}x{field[1]}"
            connected = [f"{self.layers[j].name}[0][0]" for j in sources] or [""]
            cells = [f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                     f"{layer.count_params():,}", connected[0], rf]
            rows.append([cells] + [["", "", "", more, ""] for more in connected[1:]])
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to", "Receptive field"]
        if self.chain:  # as Keras: a plain stack needs no "Connected to"
            for row in [[header]] + rows:
                for cells in row:
                    del cells[3]
        every_line = [header] + [cells for row in rows for cells in row]
        widths = [max(len(cells[i]) for cells in every_line) + 3 for i in range(len(header))]
        line = lambda cells: " " + "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        total = sum(widths) + 1
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * total)
        print_fn(line(header))
        print_fn("=" * total)
        for i, row in enumerate(rows):
            for cells in row:
                print_fn(line(cells))
            print_fn(("=" if i == len(rows) - 1 else "_") * total)
        n, trainable = self.count_params(), self.count_trainable_params()
        print_fn(f"Total params: {n:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {n - trainable:,}")
        print_fn("_" * total)


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
            self.layers = [layer.layer]
            self.set_plan([[]])
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"model {self.name!r}: expected a Layer, got {type(layer).__name__}")
        check_unique_names([*self.layers, *self.pending, layer], f"model {self.name!r}")
        if self.input_tensor is None and layer.declared_input_shape is not None and not self.pending:
            self.add(Input(layer.declared_input_shape))
        if self.input_tensor is None:
            self.pending.append(layer)  # built when the first batch shows the input shape
            return
        self.output_tensor = layer(self.output_tensor)
        self.layers.append(layer)
        self.set_plan(self.inbound + [[len(self.layers) - 2]])

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
