"""Model (functional graph) and Sequential: whole-network forward and explicit backward.

``forward`` runs the layers in order; ``backward`` runs them in reverse, each turning
``dL/d(output)`` into ``dL/d(input)`` and filling its parameter gradients. Training methods
(``compile``, ``fit``, ``evaluate``, ``predict``) come from ``training.Trainable``.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from . import atomic, backend, checkpoint, config
from .layers.base import InputLayer, Layer, LinearLayer, SymbolicTensor, unique_name
from .training import Trainable


class Model(Trainable):
    def __init__(self, inputs: SymbolicTensor, outputs: SymbolicTensor, name: str | None = None):
        for what, tensor in (("inputs", inputs), ("outputs", outputs)):
            if not isinstance(tensor, SymbolicTensor):
                raise TypeError(f"Model: {what} must be a symbolic tensor from Input(...) or a layer call, "
                                f"got {type(tensor).__name__}")
        chain = []
        tensor = outputs
        while tensor is not None:  # follow the graph back from the output to the input
            chain.append(tensor.layer)
            if tensor is inputs:
                break
            tensor = tensor.parent
        if tensor is not inputs:
            raise ValueError("Model: the outputs are not computed from the given inputs")
        self.layers: list[Layer] = chain[::-1]
        self.name = name if name is not None else unique_name("model")
        super().__init__()

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
        x = self.prepare_input(x)
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dy, input_gradient: bool = True):
        """dL/d(output) -> dL/d(input); fills every layer's ``grads``.

        With ``input_gradient=False`` (what training uses) it returns None, and a first Conv2D or
        Dense skips computing dL/d(input), which no parameter needs: for a first convolution
        that is one matrix product and a col2im saved per step.
        """
        return self.backward_layers(self.layers, dy, input_gradient)

    def backward_layers(self, layers, dy, input_gradient: bool = True):
        """Backward through ``layers``, the first ones of ``self.layers`` (all, or all but the
        last for ``backward_logits``); see ``backward``."""
        first = next((layer for layer in self.layers if not isinstance(layer, InputLayer)), None)
        for layer in reversed(layers):
            if layer is first and not input_gradient:
                if isinstance(layer, LinearLayer):
                    layer.backward(dy, input_gradient=False)
                else:
                    layer.backward(dy)  # a parameter-free first layer: nothing to skip
                return None
            dy = layer.backward(dy)
        return dy if input_gradient else None

    # --- parameters -----------------------------------------------------------------------------
    def trainable_params(self) -> list:
        return [p for layer in self.layers for p in layer.params.values()]

    def gradients(self) -> list:
        return [g for layer in self.layers for g in layer.grads.values()]

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: list) -> None:
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"model {self.name!r}: expected {expected} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            layer.set_weights(weights[i:i + len(layer.params)])
            i += len(layer.params)

    # --- weights on disk -------------------------------------------------------------------------
    def weight_arrays(self) -> dict[str, np.ndarray]:
        """``{"<index>/<layer name>/<param>": array}``: position first, so names need not match on load."""
        return {f"{i:03d}/{layer.name}/{key}": backend.to_numpy(value)
                for i, layer in enumerate(self.layers) for key, value in layer.params.items()}

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the weights to ``path`` (.npz) atomically: a kill mid-write leaves the old file intact."""
        write_npz_atomically(path, self.weight_arrays())

    def load_weights(self, path: str | os.PathLike) -> None:
        """Read weights written by ``save_weights``; everything is checked before any layer changes."""
        self.set_weight_arrays(read_npz(path), source=str(path))

    def set_weight_arrays(self, arrays: dict[str, np.ndarray], source: str) -> None:
        """Load ``weight_arrays()``-style data after checking it fits this model, layer by layer."""
        saved = self.check_weight_arrays(arrays, source)
        for i, layer in enumerate(self.layers):
            if layer.params:
                layer.set_weights([saved[i][k] for k in layer.params])

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
            mine = {k: tuple(v.shape) for k, v in layer.params.items()}
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

    # --- summary -----------------------------------------------------------------------------------
    def summary(self, print_fn=print) -> None:
        """A Keras-like table with a receptive-field column (the input region one output pixel sees)."""
        rows = []
        field = None
        for layer in self.layers:
            field = layer.receptive_field(field)
            rf = "whole input" if field is None else f"{field[0]}x{field[1]}"
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                         f"{layer.count_params():,}", rf))
        header = ("Layer (type)", "Output Shape", "Param #", "Receptive field")
        widths = [max(len(r[i]) for r in rows + [header]) + 3 for i in range(4)]
        line = lambda cells: " " + "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        total = sum(widths) + 1
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * total)
        print_fn(line(header))
        print_fn("=" * total)
        for i, row in enumerate(rows):
            print_fn(line(row))
            print_fn(("=" if i == len(rows) - 1 else "_") * total)
        n = self.count_params()
        print_fn(f"Total params: {n:,}")
        print_fn(f"Trainable params: {n:,}")
        print_fn("Non-trainable params: 0")
        print_fn("_" * total)


class Sequential(Model):
    """A plain stack: ``Sequential([Input((32, 32, 3)), Conv2D(...), ...])``.

    The input shape comes from a leading ``Input``, from ``input_shape=`` on the first layer, or
    from the first batch passed to ``forward``.
    """

    def __init__(self, layers: list | None = None, name: str | None = None):
        self.name = name if name is not None else unique_name("sequential")
        self.pending: list[Layer] = []
        self.layers = []
        self.input_tensor = None
        Trainable.__init__(self)
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            if self.input_tensor is not None or self.pending:
                raise ValueError(f"model {self.name!r}: Input(...) must come first, and only once")
            self.input_tensor = self.output_tensor = layer
            self.layers = [layer.layer]
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"model {self.name!r}: expected a Layer, got {type(layer).__name__}")
        if self.input_tensor is None and layer.declared_input_shape is not None and not self.pending:
            from .layers.base import Input
            self.add(Input(layer.declared_input_shape))
        if self.input_tensor is None:
            self.pending.append(layer)  # built when the first batch shows the input shape
            return
        self.output_tensor = layer(self.output_tensor)
        self.layers.append(layer)

    def build(self, input_shape: tuple) -> None:
        from .layers.base import Input
        pending, self.pending = self.pending, []
        self.add(Input(input_shape))
        for layer in pending:
            self.add(layer)

    def forward(self, x, training: bool = False):
        if self.input_tensor is None:
            self.build(x.shape[1:])
        return super().forward(x, training)


def write_npz_atomically(path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``
    (see ``tinyconv.atomic``: temporaries of earlier killed writes of ``path`` are removed first)."""
    atomic.write_file(path, lambda f: np.savez(f, **arrays), "saving")


def read_npz(path) -> dict[str, np.ndarray]:
    """Read every array of an .npz file, turning a missing or damaged file into a clear error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                loaded = None  # a plain .npy array
            else:
                with loaded:
                    arrays = {key: loaded[key] for key in loaded.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, io.UnsupportedOperation) as exc:
        raise ValueError(f"{path}: not a readable .npz weights file (truncated or corrupt?): {exc}") from exc
    if loaded is None:
        raise ValueError(f"{path}: holds a single NumPy array (.npy), not an .npz archive of named arrays "
                         "as model.save_weights writes")
    return arrays
