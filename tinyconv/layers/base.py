"""The Layer contract, the symbolic tensors of the functional API, and ``Input``.

Every layer maps a batch ``x`` of shape ``(N, *input_shape)`` to ``y`` of shape
``(N, *output_shape)`` and, given the upstream gradient ``dL/dy``, returns ``dL/dx`` and fills
``grads`` (same keys as ``params``). ``forward`` caches what ``backward`` needs; ``backward``
never modifies the gradient it receives.

Functional API: ``Input(shape)`` returns a ``SymbolicTensor``; calling a layer on a symbolic
tensor builds the layer for that shape and returns the symbolic output, which remembers the
tensors it was computed from. ``Model`` follows those links back from the output to the input.
A tensor may feed several layers; merge layers (``Add``, ``Concatenate``, in ``merge.py``) are
called on a list of tensors.

Constructors check every argument (``tinyconv.arguments``) before anything else happens, so a
refused layer does not even take a name. The base class also guards the order of calls: every
layer's ``forward`` (and ``forward_logits``) remembers the shape of its output, and every
``backward`` (``backward_logits``) first checks that a forward came before it and that the upstream
gradient has that shape (``__init_subclass__`` wraps the methods of each layer class, so no layer
has to remember to do it).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import arguments, backend, config, initializers
from ..config import unique_name
from ..kernels import geometry

def snake_case(class_name: str) -> str:
    out = ""
    for i, ch in enumerate(class_name):
        if ch.isupper() and i > 0 and (not class_name[i - 1].isupper() or
                                       (i + 1 < len(class_name) and class_name[i + 1].islower())):
            out += "_"
        out += ch.lower()
    return out.replace("2_d", "2d")


def constructor_owner(layer, name) -> str:
    """How a constructor's errors name the layer before it has its name: ``Conv2D 'features'`` or ``Conv2D``."""
    cls = type(layer).__name__
    return cls if name is None else f"{cls} {arguments.object_name(name, 'name', cls)!r}"


def feature_axis_argument(axis, owner: str) -> int:
    """An ``axis`` argument that counts the batch axis, as Keras's do, and must not name it."""
    axis = arguments.integer(axis, "axis", owner)
    if axis == 0:
        raise ValueError(f"{owner}: axis 0 is the batch axis; give a feature axis (default -1, the last)")
    return axis


def _remembers_output_shape(forward):
    @functools.wraps(forward)
    def checked_forward(self, *args, **kwargs):
        y = forward(self, *args, **kwargs)
        self.forward_output_shape = tuple(y.shape)
        return y
    return checked_forward


def _checks_gradient(backward):
    @functools.wraps(backward)
    def checked_backward(self, dy, *args, **kwargs):
        self.check_gradient(dy)
        dx = backward(self, dy, *args, **kwargs)
        # Backward has read the cache: its arrays go now, before the layers below run theirs.
        self.release_cache()
        return dx
    return checked_backward


class SymbolicTensor:
    """A placeholder for the batch flowing through the graph: its shape, the layer that made it
    and the tensors that layer was called on (none for an ``Input``)."""

    def __init__(self, shape: tuple, layer: "Layer", inputs: list["SymbolicTensor"]):
        self.shape = (None, *shape)
        self.layer = layer
        self.inputs = inputs

    def __repr__(self) -> str:
        return f"SymbolicTensor(shape={self.shape}, layer={self.layer.name!r})"


class Layer:
    """Base class: naming, building, input checks, weights access and the functional call."""

    # Non-trainable weights that a training forward pass moves (BatchNorm's): data-parallel training
    # averages them over the ranks after each step.
    moving_statistics: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for forward, backward in (("forward", "backward"), ("forward_logits", "backward_logits")):
            if forward in cls.__dict__:
                setattr(cls, forward, _remembers_output_shape(cls.__dict__[forward]))
            if backward in cls.__dict__:
                setattr(cls, backward, _checks_gradient(cls.__dict__[backward]))

    def __init__(self, name: str | None = None, input_shape: tuple | None = None):
        owner = constructor_owner(self, name)
        if input_shape is not None:
            input_shape = arguments.shape(input_shape, "input_shape", owner)
        self.name = name if name is not None else unique_name(snake_case(type(self).__name__))
        self.params: dict[str, object] = {}  # trainable: the optimizer updates them from grads
        self.grads: dict[str, object] = {}
        self.non_trainable_params: dict[str, object] = {}  # state such as BatchNorm's moving mean
        self.regularizers: dict[str, object] = {}  # weight name -> its penalty (regularizers.py)
        self.built = False
        self.in_graph = False  # whether a graph holds it (see join_graph)
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        self.declared_input_shape = input_shape
        self.forward_output_shape: tuple | None = None  # set by every forward, checked by backward
        self.cache = None  # what forward keeps for backward; one forward's cache serves one backward

    # --- building -------------------------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        """Create parameters for inputs of shape ``input_shape`` (without the batch axis)."""
        input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def add_param(self, name: str, shape: tuple, initializer, trainable: bool = True) -> None:
        init = initializers.get(initializer, owner=f"layer {self.name!r}")
        value = backend.to_device(np.asarray(init(tuple(shape)), dtype=config.float_dtype()))
        if trainable:
            self.params[name] = value
            self.grads[name] = None
        else:
            self.non_trainable_params[name] = value

    def __call__(self, tensor: SymbolicTensor) -> SymbolicTensor:
        self.require_symbolic(tensor)
        self.join_graph(tensor.shape[1:])
        return SymbolicTensor(self.output_shape, self, [tensor])

    def require_symbolic(self, tensor) -> None:
        if not isinstance(tensor, SymbolicTensor):
            hint = " (only merge layers such as Add and Concatenate take a list)" \
                if isinstance(tensor, (list, tuple)) else ""
            raise TypeError(
                f"layer {self.name!r}: calling a layer builds the graph and needs a symbolic tensor "
                f"(from Input(...)), got {type(tensor).__name__}{hint}; use layer.forward(x) for arrays")

    def join_graph(self, input_shape) -> None:
        """Become a node of a graph on inputs of ``input_shape``: built now, or already built for that
        shape (a Normalization adapted first, as Keras allows)."""
        # One call per layer: a layer is one node of the graph (share a tensor, not a layer).
        if self.in_graph:
            raise ValueError(f"layer {self.name!r} is already part of a graph; create a new layer instead")
        if not self.built:
            self.build(input_shape)
        elif tuple(self.input_shape) != tuple(input_shape):
            raise ValueError(f"layer {self.name!r} was built for inputs of shape {(None, *self.input_shape)}, "
                             f"and is called on {(None, *input_shape)}")
        self.in_graph = True

    # --- checks -----------------------------------------------------------------------------
    def check_input(self, x) -> None:
        """Fail clearly on a wrong type, dtype or shape before any arithmetic happens."""
        self.check_array(x)
        if not self.built:
            self.build(x.shape[1:])
        self.check_shape(x, self.input_shape)

    def check_array(self, x) -> None:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"layer {self.name!r}: expected an array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise TypeError(f"layer {self.name!r}: expected a floating-point array, got dtype {x.dtype}")

    def check_shape(self, x, expected: tuple) -> None:
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): expected input of shape "
                f"(batch, {', '.join(map(str, expected))}), got {tuple(x.shape)}")

    def image_shape(self, input_shape) -> tuple[int, int, int]:
        """``(H, W, C)`` of an image input, or a clear error for any other rank."""
        if len(input_shape) != 3:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): expected input of shape "
                f"(batch, height, width, channels), got (batch, {', '.join(map(str, input_shape))})")
        return tuple(input_shape)

    def release_cache(self) -> None:
        """Let go of what the last forward kept for backward (after backward, or when none follows)."""
        self.cache = None
        self.forward_output_shape = None

    def check_gradient(self, dy) -> None:
        """Fail clearly when backward has no forward before it or ``dy`` does not match forward's output."""
        if getattr(self, "forward_output_shape", None) is None:  # also a subclass that skipped __init__
            raise RuntimeError(f"layer {self.name!r} ({type(self).__name__}): backward was called before "
                               "forward (or again after one backward); call forward(x) first: a forward "
                               "keeps what one backward needs, and that backward lets it go")
        if tuple(getattr(dy, "shape", ())) != self.forward_output_shape:
            got = tuple(dy.shape) if hasattr(dy, "shape") else type(dy).__name__
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}): expected an upstream gradient of "
                             f"shape {self.forward_output_shape} (the output of the last forward), got {got}")

    # --- weights ----------------------------------------------------------------------------
    @property
    def weights(self) -> dict[str, object]:
        """Every weight by name, trainable ones first: Keras's order (kernel, bias; gamma, beta,
        moving_mean, moving_variance)."""
        return {**self.params, **self.non_trainable_params}

    def get_weights(self) -> list[np.ndarray]:
        """Weights as host arrays, in Keras order (see ``weights``)."""
        return [backend.to_numpy(p).copy() for p in self.weights.values()]

    def set_weights(self, weights: list) -> None:
        if not self.built:
            raise RuntimeError(f"layer {self.name!r} ({type(self).__name__}): set_weights before the layer is built; "
                               "its weights are made when it is called on an input (or its model is built)")
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(
                f"layer {self.name!r}: expected {len(mine)} weight arrays, got {len(weights)}")
        for (key, current), new in zip(mine.items(), weights):
            new = backend.to_numpy(new)  # a NumPy or CuPy array, or a nested list
            if new.shape != tuple(current.shape):
                raise ValueError(
                    f"layer {self.name!r}: weight {key!r} expected shape {tuple(current.shape)}, "
                    f"got {new.shape}")
        for current, new in zip(mine.values(), weights):  # all checked: now change them
            current[...] = backend.get_array_module(current).asarray(backend.to_numpy(new), dtype=current.dtype)

    def count_params(self) -> int:
        """Every weight's entries, trainable or not (as Keras counts a layer)."""
        return int(sum(int(np.prod(p.shape)) for p in self.weights.values()))

    def count_trainable_params(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    # --- a final sigmoid or softmax, fused with the loss ----------------------------------------------
    @property
    def ends_in_sigmoid(self) -> bool:
        """True when the output is ``sigmoid(z)`` of a ``z = forward_logits(x)``: a model ending in such a
        layer skips the sigmoid and takes binary cross-entropy on ``z`` (see ``training.py``)."""
        return False

    @property
    def ends_in_softmax(self) -> bool:
        """The same for ``softmax(z)`` over the last axis and categorical cross-entropy."""
        return False

    def forward_logits(self, x, training: bool = False):
        """The input z of the final sigmoid or softmax (for a layer that ends in one)."""
        raise TypeError(f"layer {self.name!r} ({type(self).__name__}) does not end in a sigmoid or softmax")

    def backward_logits(self, dz):
        """dL/dx from dL/dz, z being what ``forward_logits`` returned."""
        raise TypeError(f"layer {self.name!r} ({type(self).__name__}) does not end in a sigmoid or softmax")

    # --- receptive field ----------------------------------------------------------------------
    def receptive_field(self, field: tuple[int, int, int, int] | None):
        """Propagate (size_h, size_w, jump_h, jump_w) of one output pixel; ``None`` means the whole input.

        Only layers that slide a window change it: size grows by ``(k - 1) * jump``, jump by the stride.
        """
        return field

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class WindowLayer(Layer):
    """A layer that slides a (KH, KW) window with strides over an NHWC image (Conv2D, MaxPooling2D).

    Its padding and output size come from ``kernels/geometry.py`` (``"valid"``: no padding,
    ``OH = floor((H - KH) / SH) + 1``; ``"same"``: Keras's padding, ``OH = ceil(H / SH)``), the one
    place every layer and kernel family takes them from. Built, the layer holds its ``geometry``
    (a ``geometry.Window``: size, strides, pads), the one value it hands to the kernels.
    """

    def __init__(self, window, strides, padding: str, window_name: str = "window size", **kwargs):
        owner = constructor_owner(self, kwargs.get("name"))
        self.window = arguments.pair(window, window_name, owner)
        self.strides = arguments.pair(strides, "strides", owner)
        self.padding = arguments.one_of(padding, "padding", owner, ("valid", "same"))
        self.geometry = geometry.Window(self.window, self.strides, (0, 0, 0, 0))  # its pads come with the input
        super().__init__(**kwargs)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        return self.geometry.pads

    def compute_output_shape(self, input_shape):
        h, w, _ = self.image_shape(input_shape)
        self.geometry = geometry.Window.keras(self.padding, h, w, self.window, self.strides)
        (kh, kw) = self.window
        oh, ow = geometry.window_output((None, h, w), self.geometry)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"layer {self.name!r}: a {kh}x{kw} window with padding {self.padding!r} does not fit an "
                f"input of {h}x{w}; the output would be {oh}x{ow}")
        return oh, ow, self.output_channels(input_shape[2])

    def output_channels(self, input_channels: int) -> int:
        return input_channels

    def receptive_field(self, field):
        if field is None:
            return None
        size_h, size_w, jump_h, jump_w = field
        (kh, kw), (sh, sw) = self.window, self.strides
        return size_h + (kh - 1) * jump_h, size_w + (kw - 1) * jump_w, jump_h * sh, jump_w * sw


class InputLayer(Layer):
    """The graph's entry: holds the input shape (without the batch axis)."""

    def __init__(self, shape: tuple, name: str | None = None):
        shape = arguments.shape(shape, "shape", constructor_owner(self, name))
        super().__init__(name=name)
        self.build(shape)

    def forward(self, x, training: bool = False):
        self.check_input(x)
        return x

    def backward(self, dy):
        return dy

    def receptive_field(self, field):
        return 1, 1, 1, 1


def Input(shape: tuple, name: str | None = None) -> SymbolicTensor:
    """The functional API's start: ``inputs = Input(shape=(32, 32, 3))`` (no batch axis)."""
    layer = InputLayer(shape, name=name)
    return SymbolicTensor(layer.input_shape, layer, [])
