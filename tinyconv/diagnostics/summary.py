"""``model.summary()``: Keras's table of layers, with a receptive-field column.

The receptive field of a layer is the region of the input that one of its output pixels sees
(docs/receptive-field.md). A graph also gets Keras's "Connected to" column (``name[0][0]``: the
layers whose outputs a layer takes); a merge sees as far as the farthest-seeing of its branches.
"""
from __future__ import annotations

from ..layers.merge import Merge


def print_summary(model, print_fn=print) -> None:
    """Print ``model``'s table through ``print_fn``, one line per call."""
    fields = []
    rows = []
    for layer, sources in zip(model.layers, model.inbound):
        inputs = [fields[j] for j in sources]
        field = layer.receptive_field(inputs if isinstance(layer, Merge) else (inputs or [None])[0])
        fields.append(field)
        rf = "whole input" if field is None else f"{field[0]}x{field[1]}"
        connected = [f"{model.layers[j].name}[0][0]" for j in sources] or [""]
        cells = [f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                 f"{layer.count_params():,}", connected[0], rf]
        rows.append([cells] + [["", "", "", more, ""] for more in connected[1:]])
    header = ["Layer (type)", "Output Shape", "Param #", "Connected to", "Receptive field"]
    if model.chain:  # as Keras: a plain stack needs no "Connected to"
        for row in [[header]] + rows:
            for cells in row:
                del cells[3]
    every_line = [header] + [cells for row in rows for cells in row]
    widths = [max(len(cells[i]) for cells in every_line) + 3 for i in range(len(header))]
    line = lambda cells: " " + "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
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
    print_fn("_" * total)
