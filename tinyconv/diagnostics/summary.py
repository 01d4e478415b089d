"""``model.summary()``: Keras's table of layers, with a receptive-field column (and, for a batch
size, each layer's forward FLOPs and activation bytes: ``cost.py``).

The receptive field of a layer is the region of the input that one of its output pixels sees
(docs/receptive-field.md). A graph also gets Keras's "Connected to" column (``name[0][0]``: the
layers whose outputs a layer takes); a merge sees as far as the farthest-seeing of its branches.
"""
from __future__ import annotations

from .. import arguments
from ..layers.merge import Merge
from . import cost


def print_summary(model, line_length: int | None = None, positions=None, print_fn=None,
                  expand_nested: bool = False, show_trainable: bool = False, layer_range=None,
                  batch_size: int | None = None) -> None:
    """Print ``model``'s table through ``print_fn`` (default ``print``), one line per call.

    Keras's arguments: ``line_length`` (the table's width), ``positions`` (each column's right edge,
    as fractions of the width or in characters; as many as the columns, or one fewer to leave out
    the receptive field, as Keras's table has it), ``show_trainable`` (a "Trainable" column),
    ``layer_range`` (the names of the first and last layer to show). A cell too long for its column
    is cut, as in Keras. ``expand_nested`` is accepted: tinyconv models hold no nested models.
    tinyconv's own ``batch_size`` adds each layer's forward FLOPs and output bytes for a batch of that
    size, and their totals (what they count: ``diagnostics/cost.py``).
    """
    owner = f"model {model.name!r}: summary"
    print_fn = print if print_fn is None else print_fn
    if line_length is not None:
        line_length = arguments.integer(line_length, "line_length", owner, low=20)
    arguments.boolean(expand_nested, "expand_nested", owner)
    show_trainable = arguments.boolean(show_trainable, "show_trainable", owner)
    if batch_size is not None:
        batch_size = arguments.integer(batch_size, "batch_size", owner, low=1)
    costs = cost.layer_costs(model, batch_size or 1)
    first, last = _layer_range(model, layer_range, owner)
    fields = []
    rows = []
    for index, (layer, sources) in enumerate(zip(model.graph_layers, model.inbound)):
        inputs = [fields[j] for j in sources]
        field = layer.receptive_field(inputs if isinstance(layer, Merge) else (inputs or [None])[0])
        fields.append(field)
        if not first <= index <= last:
            continue
        rf = "whole input" if field is None else f"{field[0]}x{field[1]}"
        connected = [f"{model.graph_layers[j].name}[0][0]" for j in sources] or [""]
        flops, activations = costs[index]
        cells = [f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                 f"{layer.count_params():,}", connected[0], rf, "Y",
                 cost.readable(flops, "FLOPs"), cost.readable(activations, "B", 1024)]
        rows.append([cells] + [["", "", "", more, "", "", "", ""] for more in connected[1:]])
    header = ["Layer (type)", "Output Shape", "Param #", "Connected to", "Receptive field", "Trainable",
              f"FLOPs (batch {batch_size})", "Output bytes"]
    dropped = [i for i, wanted in ((3, not model.chain), (5, show_trainable), (6, batch_size is not None),
                                   (7, batch_size is not None)) if not wanted]
    # as Keras: a plain stack needs no "Connected to"
    if positions is not None and len(positions) == len(header) - len(dropped) - 1:
        dropped.append(4)  # Keras's own columns only
    for cells in [header] + [cells for row in rows for cells in row]:
        for i in sorted(dropped, reverse=True):
            del cells[i]
    every_line = [header] + [cells for row in rows for cells in row]
    widths = [max(len(cells[i]) for cells in every_line) + 3 for i in range(len(header))]
    if line_length is not None or positions is not None:
        widths = _column_widths(widths, line_length, positions, owner)
    line = lambda cells: " " + "".join(c[:w - 1].ljust(w) for c, w in zip(cells, widths)).rstrip()
    total = sum(widths) + 1
    print_fn(f'Model: "{model.name}"')
    print_fn("_" * total)
    print_fn(line(header))
    print_fn("=" * total)
    for i, row in enumerate(rows):
        for cells in row:
            print_fn(line(cells))
        print_fn(("=" if i == len(rows) - 1 else "_") * total)
    n, trainable = model.count_params(), model.count_trainable_params()
    print_fn(f"Total params: {n:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {n - trainable:,}")
    if batch_size is not None:
        flops, activations = (sum(column) for column in zip(*costs))
        print_fn(f"Forward pass, batch {batch_size}: {cost.readable(flops, 'FLOPs')} (a training step about 3x: "
                 f"{cost.readable(3 * flops, 'FLOPs')}); layer outputs {cost.readable(activations, 'B', 1024)}")
    print_fn("_" * total)


def _column_widths(natural: list[int], line_length: int | None, positions, owner: str) -> list[int]:
    """Widths from Keras's right edges (fractions of ``line_length`` when all are <= 1); the natural
    widths stretched or squeezed to ``line_length`` without ``positions``."""
    total = line_length - 1 if line_length is not None else sum(natural)  # the table adds a leading space
    if positions is None:
        edges = [round(total * sum(natural[:i + 1]) / sum(natural)) for i in range(len(natural))]
        return [max(edge - previous, 2) for edge, previous in zip(edges, [0] + edges[:-1])]
    if len(positions) != len(natural) or not all(isinstance(p, (int, float)) and p > 0 for p in positions):
        raise ValueError(f"{owner}: positions must be {len(natural)} increasing column edges (fractions of "
                         f"line_length, or characters), got {positions!r}")
    edges = [round(p * total) if max(positions) <= 1 else int(p) for p in positions]
    if any(b <= a for a, b in zip([0] + edges[:-1], edges)):
        raise ValueError(f"{owner}: positions must increase, got {positions!r}")
    return [b - a for a, b in zip([0] + edges[:-1], edges)]


def _layer_range(model, layer_range, owner: str) -> tuple[int, int]:
    """The positions of the first and last layer to show (all of them without ``layer_range``)."""
    if layer_range is None:
        return 0, len(model.graph_layers) - 1
    names = [layer.name for layer in model.graph_layers]
    if not (isinstance(layer_range, (list, tuple)) and len(layer_range) == 2
            and all(name in names for name in layer_range)):
        raise ValueError(f"{owner}: layer_range must be the names of two layers of the model, the first and "
                         f"the last to show, from {names}; got {layer_range!r}")
    first, last = names.index(layer_range[0]), names.index(layer_range[1])
    if first > last:
        raise ValueError(f"{owner}: layer_range {list(layer_range)}: {layer_range[0]!r} comes after {layer_range[1]!r}")
    return first, last
