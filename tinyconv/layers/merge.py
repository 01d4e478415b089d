r"""Merge layers: Add and Concatenate, called on a list of tensors (``Add()([a, b])``).

They are what turns a chain into a graph: a residual block adds a layer's input to its output,
an inception-style block concatenates branches. Every input has the batch axis first.

Add, inputs ``x_1 ... x_k`` of one shape (N, ...):

    forward:   y = x_1 + x_2 + ... + x_k
    backward:  dx_i = dy                     for every i (each input moves y one for one)

Concatenate(axis=-1), inputs equal in shape except along ``axis``, sizes ``c_1 ... c_k``:

    forward:   y = [x_1 | x_2 | ... | x_k]   along axis, size c_1 + ... + c_k
    backward:  dx_i = the slice of dy that x_i filled

The other half of graph backprop lives in ``Model``: where one tensor feeds several layers, the
gradients coming back from each use are *summed* (the multivariate chain rule).
"""
from __future__ import annotations

from ..backend import get_array_module
from .base import Layer, SymbolicTensor, constructor_owner, feature_axis_argument


class Merge(Layer):
    """Base of the merge layers: called on a list, ``forward`` takes a list of arrays and
    ``backward`` returns a list of gradients, one per input, in the same order."""

    def __call__(self, tensors) -> SymbolicTensor:
        if not isinstance(tensors, (list, tuple)) or len(tensors) < 2:
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}): a merge layer is called on a list "
                            f"of at least two symbolic tensors, e.g. {type(self).__name__}()([a, b]); "
                            f"got {type(tensors).__name__}")
        for tensor in tensors:
            self.require_symbolic(tensor)
        self.join_graph([tuple(tensor.shape[1:]) for tensor in tensors])
        return SymbolicTensor(self.output_shape, self, list(tensors))

    def build(self, input_shapes) -> None:
        shapes = [tuple(int(d) for d in shape) for shape in input_shapes]
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes
        self.built = True

    def check_inputs(self, xs) -> None:
        """A list of at least two float arrays, each of the shape this layer was built for."""
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}): forward takes a list of at least "
                            f"two arrays, got {type(xs).__name__}")
        for x in xs:
            self.check_array(x)
        if not self.built:
            self.build([x.shape[1:] for x in xs])
        if len(xs) != len(self.input_shape):
            raise ValueError(f"layer {self.name!r}: built for {len(self.input_shape)} inputs, got {len(xs)}")
        for x, shape in zip(xs, self.input_shape):
            self.check_shape(x, shape)
        if len({x.shape[0] for x in xs}) > 1:
            raise ValueError(f"layer {self.name!r}: the inputs' batch sizes differ: {[x.shape[0] for x in xs]}")

    def receptive_field(self, fields):
        """The largest field among the branches (``None``, the whole input, wins)."""
        if any(field is None for field in fields):
            return None
        return tuple(max(field[i] for field in fields) for i in range(4))


class Add(Merge):
    def compute_output_shape(self, input_shapes):
        if any(shape != input_shapes[0] for shape in input_shapes):
            raise ValueError(f"layer {self.name!r} (Add): all inputs need the same shape, got "
                             f"{[(None, *shape) for shape in input_shapes]}")
        return input_shapes[0]

    def forward(self, xs, training: bool = False):
        self.check_inputs(xs)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x  # y is already a new array
        return y

    def backward(self, dy):
        # The same array for every input: callers never write into a gradient they are given.
        return [dy] * len(self.input_shape)


class Concatenate(Merge):
    def __init__(self, axis: int = -1, name: str | None = None):
        self.axis = feature_axis_argument(axis, constructor_owner(self, name))
        super().__init__(name=name)

    def compute_output_shape(self, input_shapes):
        rank = len(input_shapes[0])
        # self.axis counts the batch axis (as in Keras); ``feature_axis`` indexes shapes without it.
        if not -rank <= self.axis <= rank or any(len(shape) != rank for shape in input_shapes):
            raise ValueError(f"layer {self.name!r} (Concatenate): axis {self.axis} does not fit inputs "
                             f"of shapes {[(None, *shape) for shape in input_shapes]}")
        self.feature_axis = self.axis - 1 if self.axis > 0 else rank + self.axis
        others = [shape[:self.feature_axis] + shape[self.feature_axis + 1:] for shape in input_shapes]
        if any(other != others[0] for other in others):
            raise ValueError(f"layer {self.name!r} (Concatenate): the inputs must agree on every axis but "
                             f"axis {self.axis}, got {[(None, *shape) for shape in input_shapes]}")
        size = sum(shape[self.feature_axis] for shape in input_shapes)
        return (*input_shapes[0][:self.feature_axis], size, *input_shapes[0][self.feature_axis + 1:])

    def forward(self, xs, training: bool = False):
        self.check_inputs(xs)
        return get_array_module(xs[0]).concatenate(xs, axis=self.feature_axis + 1)

    def backward(self, dy):
        xp = get_array_module(dy)
        sizes = [shape[self.feature_axis] for shape in self.input_shape]
        ends = [sum(sizes[:i + 1]) for i in range(len(sizes))]
        parts = xp.split(dy, ends[:-1], axis=self.feature_axis + 1)
        # Contiguous copies: a strided slice along the channels would slow every layer after it.
        return [xp.ascontiguousarray(part) for part in parts]


def add(inputs, **kwargs) -> SymbolicTensor:
    """Keras's functional shortcut: ``add([a, b])`` is ``Add()([a, b])``."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs) -> SymbolicTensor:
    """Keras's functional shortcut: ``concatenate([a, b])`` is ``Concatenate(axis=-1)([a, b])``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
