"""Make the figures of the engine pages in docs/ (the data pages have their own script).

    python docs/make_figures.py              # writes docs/figures/*.png
    python docs/make_figures.py --out /tmp   # somewhere else

Every number in the figures is computed here with tinyconv itself, so the figures follow the code:

- ``im2col.png``: one channel of a 4x4 input, its four 3x3 windows, and the im2col matrix.
- ``receptive-field.png``: the receptive field of each layer of the seed CNN at 32x32, read from the
  layers' ``receptive_field`` (the method ``model.summary()`` uses), drawn to scale on the input.
- ``conv-input-gradient.png``: the input gradient of a 3x3 input and a 2x2 kernel (docs/conv2d.md's
  worked example) as a full convolution of the padded upstream gradient with the flipped kernel.
- ``initialization.png``: per-layer statistics of a 20-layer ReLU stack under four initial weight
  scales (too small, Glorot, He, too large): activations forward, gradients backward.
- ``gradcheck-step-size.png``: the relative error of central differences against the step h, measured
  on a real layer (Conv2D with a sigmoid) in float32 and float64.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tinyconv  # noqa: E402
from tinyconv.kernels import reference  # noqa: E402
from tinyconv.kernels.geometry import Window  # noqa: E402
from tinyconv.layers import Conv2D, Dense, MaxPooling2D, reset_names  # noqa: E402
from tinyconv.zoo import seed_cnn  # noqa: E402

HERE = Path(__file__).resolve().parent
COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]


def save(fig, path: Path) -> None:
    # No software version or date in the metadata, so rerunning the script changes no bytes.
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path}")


def draw_grid(ax, values, x0, y0, highlight=None, fmt="{:g}"):
    """Draw a matrix of numbers as boxes, top-left at (x0, y0), rows going down."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            color = highlight.get((r, c), "white") if highlight else "white"
            ax.add_patch(patches.Rectangle((x0 + c, y0 - r - 1), 1, 1, facecolor=color, edgecolor="0.3"))
            ax.text(x0 + c + 0.5, y0 - r - 0.5, fmt.format(values[r, c]), ha="center", va="center", fontsize=9)


def im2col_figure(out: Path) -> None:
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 4, 4, 1)
    cols = reference.im2col(x, Window((3, 3), (1, 1), (0, 0, 0, 0)))  # (4, 9): one row per output pixel
    fig, ax = plt.subplots(figsize=(10, 3.6))
    # The input, with each window's outline in its own colour (offset a little so they stay apart).
    draw_grid(ax, x[0, :, :, 0], 0, 4)
    for k, (r, q) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        inset = 0.06 + 0.06 * k
        ax.add_patch(patches.Rectangle((q + inset, 4 - r - 3 + inset), 3 - 2 * inset, 3 - 2 * inset,
                                       fill=False, edgecolor=COLORS[k], linewidth=2.2))
    ax.text(2, 4.45, "input x (4x4, one channel)", ha="center", fontsize=10)
    # The im2col matrix, each row coloured like its window.
    highlight = {(r, c): COLORS[r] + "40" for r in range(4) for c in range(9)}
    draw_grid(ax, cols, 6.5, 4, highlight=highlight)
    ax.text(11, 4.45, "im2col(x): one row per output pixel (4 x 9)", ha="center", fontsize=10)
    for r in range(4):
        ax.text(6.3, 4 - r - 0.5, f"(r={r // 2}, q={r % 2})", ha="right", va="center", fontsize=8,
                color=COLORS[r])
    ax.annotate("", xy=(5.1, 2), xytext=(4.2, 2), arrowprops=dict(arrowstyle="->", lw=1.5))
    ax.text(16, 2, "@ kernel (9 x F)\n= output (4 x F)\n= (1, 2, 2, F) NHWC", va="center", fontsize=10)
    ax.set_xlim(-0.3, 19)
    ax.set_ylim(-0.3, 4.8)
    ax.set_aspect("equal")
    ax.axis("off")
    save(fig, out / "im2col.png")


def conv_input_gradient_figure(out: Path) -> None:
    reset_names()
    tinyconv.set_floatx("float64")
    layer = Conv2D(1, (2, 2))
    layer.build((3, 3, 1))
    kernel = np.array([[1.0, -1.0], [2.0, 0.0]])
    layer.set_weights([kernel.reshape(2, 2, 1, 1), np.zeros(1)])
    layer.forward(np.array([[1.0, 2, 0], [0, 1, 3], [2, 1, 1]]).reshape(1, 3, 3, 1))
    g = np.array([[1.0, 2.0], [-1.0, 1.0]])
    dx = layer.backward(g.reshape(1, 2, 2, 1))[0, :, :, 0]
    tinyconv.set_floatx("float32")
    padded = np.pad(g, 1)
    window = {(r, c): COLORS[0] + "55" for r in (1, 2) for c in (1, 2)}
    fig, ax = plt.subplots(figsize=(9, 3.2))
    draw_grid(ax, padded, 0, 4, highlight={**{(r, c): "0.92" for r in range(4) for c in range(4)},
                                            **{(r, c): "white" for r in (1, 2) for c in (1, 2)}, **window})
    ax.add_patch(patches.Rectangle((1, 1), 2, 2, fill=False, edgecolor=COLORS[0], linewidth=2.2))
    ax.text(2, 4.45, "G padded by 1 (zeros grey)", ha="center", fontsize=10)
    ax.text(4.6, 2, "*", ha="center", va="center", fontsize=18)
    draw_grid(ax, kernel[::-1, ::-1], 5.4, 3, highlight={(r, c): COLORS[0] + "55" for r in range(2) for c in range(2)})
    ax.text(6.4, 3.45, "K flipped (180\N{DEGREE SIGN})", ha="center", fontsize=10)
    ax.text(8.3, 2, "=", ha="center", va="center", fontsize=18)
    draw_grid(ax, dx, 9.2, 3.5, highlight={(1, 1): COLORS[0] + "55"})
    ax.text(10.7, 3.95, "dL/dx (full: 3x3)", ha="center", fontsize=10)
    ax.text(0, -0.55, "centre: 1*0 + 2*2 + (-1)*(-1) + 1*1 = 6, the sum of its four windows' contributions",
            fontsize=9, color="0.25")
    ax.set_xlim(-0.3, 12.6)
    ax.set_ylim(-0.9, 4.8)
    ax.set_aspect("equal")
    ax.axis("off")
    save(fig, out / "conv-input-gradient.png")
    reset_names()


def normal_initializer(std: float, seed: int):
    """N(0, std^2) weights, whatever the layer's fans: the fixed scales of early tutorials."""
    rng = np.random.default_rng(seed)
    return lambda shape: rng.normal(0.0, std, size=shape)


def deep_stack_statistics(initializer, depth=20, width=256, batch=256, seed=0):
    """Standard deviations, layer by layer, in a stack of Dense(width, relu) layers: of each layer's
    output, of dL/d(its input), and of dL/d(its kernel), for L = sum(w * y) with w ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    layers = [Dense(width, activation="relu", kernel_initializer=initializer) for _ in range(depth)]
    y = rng.standard_normal((batch, width))
    activations = []
    for layer in layers:
        y = layer.forward(y)
        activations.append(y.std())
    grad = rng.standard_normal(y.shape)
    input_grads, kernel_grads = [], []
    for layer in reversed(layers):
        grad = layer.backward(grad)
        input_grads.append(grad.std())
        kernel_grads.append(layer.grads["kernel"].std())
    return np.array(activations), np.array(input_grads[::-1]), np.array(kernel_grads[::-1])


def initialization_figure(out: Path) -> None:
    reset_names()
    tinyconv.set_floatx("float64")  # the extreme cases leave float32's range within 20 layers
    width = 256
    cases = [("N(0, 0.01\N{SUPERSCRIPT TWO}): too small", normal_initializer(0.01, 1)),
             ("Glorot uniform: var 2/(fan_in+fan_out)", "glorot_uniform"),
             ("He normal: var 2/fan_in", "he_normal"),
             ("N(0, 0.2\N{SUPERSCRIPT TWO}): too large", normal_initializer(0.2, 2))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), sharex=True)
    titles = ["activations: std of layer l's output", "gradient: std of dL/d(input of layer l)",
              "kernel gradient: std of dL/dW of layer l"]
    for (label, initializer), color in zip(cases, [COLORS[1], COLORS[2], COLORS[0], COLORS[3]]):
        tinyconv.set_seed(0)
        stats = deep_stack_statistics(initializer, width=width)
        for ax, values in zip(axes, stats):
            ax.semilogy(np.arange(1, len(values) + 1), values, "o-", ms=3, color=color, label=label)
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer l")
        ax.set_xticks([1, 5, 10, 15, 20])
    axes[0].legend(fontsize=7.5, loc="lower left")
    fig.suptitle(f"20 Dense({width}, relu) layers, batch of N(0, 1) inputs: only He keeps every layer at one scale",
                 fontsize=10.5)
    fig.tight_layout()
    save(fig, out / "initialization.png")
    tinyconv.set_floatx("float32")
    reset_names()


def receptive_field_figure(out: Path) -> None:
    reset_names()
    model = seed_cnn(input_shape=(32, 32, 3))
    names, sizes, field = [], [], None
    for layer in model.layers:
        field = layer.receptive_field(field)
        if isinstance(layer, (Conv2D, MaxPooling2D)):
            names.append(f"{type(layer).__name__}\n{layer.name}")
            sizes.append(field[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.2, 1]})
    bars = left.bar(range(len(sizes)), sizes, color=[COLORS[0] if "Conv" in n else COLORS[1] for n in names])
    for bar, size in zip(bars, sizes):
        left.text(bar.get_x() + bar.get_width() / 2, size + 0.3, f"{size}x{size}", ha="center", fontsize=9)
    left.set_xticks(range(len(sizes)), names, fontsize=7, rotation=25, ha="right")
    left.set_ylabel("receptive field (pixels of the input)")
    left.set_title("Seed CNN at 32x32: growth layer by layer\n(convolutions green, poolings orange)", fontsize=10)
    left.set_ylim(0, 18.5)
    # To scale on the 32x32 input, centred on output pixel (3, 3) of the last pooling layer.
    right.add_patch(patches.Rectangle((0, 0), 32, 32, facecolor="0.95", edgecolor="0.4"))
    for k in range(33):
        right.plot([k, k], [0, 32], color="0.85", lw=0.4)
        right.plot([0, 32], [k, k], color="0.85", lw=0.4)
    centre = 4 * 3 + 2 - 0.5  # the last pool's pixel 3 covers input rows 6..21, centred at 13.5
    for size, color in zip(sorted(set(sizes)), plt.cm.viridis(np.linspace(0.1, 0.9, len(set(sizes))))):
        right.add_patch(patches.Rectangle((centre - size / 2 + 0.5, 32 - centre - size / 2 - 0.5), size, size,
                                          fill=False, edgecolor=color, lw=2, label=f"{size}x{size}"))
    right.set_xlim(-0.5, 32.5)
    right.set_ylim(-0.5, 32.5)
    right.set_aspect("equal")
    right.set_xticks([0, 8, 16, 24, 32])
    right.set_yticks([])
    right.legend(fontsize=8, loc="lower right", title="field", title_fontsize=8)
    right.set_title("The same sizes on the 32x32 input, around one pixel", fontsize=10)
    save(fig, out / "receptive-field.png")
    reset_names()


def central_difference_errors(dtype, steps, n_entries=12, seed=0):
    """Max relative error of central differences against exact backprop, per step size h.

    The layer is a Conv2D with a sigmoid, so the objective is curved (truncation error) and is
    evaluated in ``dtype`` (round-off). The analytic gradient always comes from float64 backprop.
    """
    rng = np.random.default_rng(seed)
    tinyconv.set_floatx("float64")
    exact_layer = Conv2D(2, (3, 3), activation="sigmoid", padding="same")
    x64 = rng.standard_normal((1, 5, 5, 2))
    y = exact_layer.forward(x64)
    projection = rng.standard_normal(y.shape)
    analytic = exact_layer.backward(projection)

    tinyconv.set_floatx(dtype)
    layer = Conv2D(2, (3, 3), activation="sigmoid", padding="same")
    layer.build(x64.shape[1:])
    layer.set_weights(exact_layer.get_weights())
    x = x64.astype(dtype)
    projection_d = projection.astype(dtype)
    entries = [np.unravel_index(i, x.shape) for i in rng.choice(x.size, n_entries, replace=False)]

    def objective(xv):
        return math.fsum((layer.forward(xv) * projection_d).astype(np.float64).ravel())

    worst = []
    for h in steps:
        errors = []
        for index in entries:
            plus, minus = x.copy(), x.copy()
            plus[index] += dtype_type(dtype)(h)
            minus[index] -= dtype_type(dtype)(h)
            numeric = (objective(plus) - objective(minus)) / (2 * h)
            a = analytic[index]
            errors.append(abs(a - numeric) / max(1e-8, abs(a) + abs(numeric)))
        worst.append(max(errors))
    tinyconv.set_floatx("float32")
    return np.array(worst)


def dtype_type(dtype):
    return np.dtype(dtype).type


def step_size_figure(out: Path) -> None:
    reset_names()
    steps = np.logspace(-12, 0, 49)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for dtype, color, offset in (("float32", COLORS[1], (-75, -30)), ("float64", COLORS[0], (0, -34))):
        errors = central_difference_errors(dtype, steps)
        ax.loglog(steps, np.maximum(errors, 1e-17), "o-", ms=3, color=color, label=dtype)
        best = int(np.argmin(errors))
        ax.annotate(f"best h = {steps[best]:.0e}\nerror {errors[best]:.0e}", (steps[best], errors[best]),
                    xytext=offset, textcoords="offset points", ha="center", fontsize=8, color=color,
                    arrowprops=dict(arrowstyle="-", color=color, lw=0.6))
    ax.axhline(1e-6, color="0.4", ls="--", lw=1)
    ax.text(1.5e-12, 1.6e-6, "bound used in the tests (1e-6)", fontsize=8, color="0.3")
    ax.axvline(1e-5, color="0.6", ls=":", lw=1)
    ax.text(1.2e-5, 3e-1, "h = 1e-5\n(gradcheck default)", fontsize=8, color="0.3")
    ax.set_xlabel("step h")
    ax.set_ylabel("max relative error over 12 input entries")
    ax.set_title("Central differences on Conv2D(sigmoid): round-off (left) vs truncation (right)", fontsize=10)
    ax.set_ylim(1e-13, 3)
    ax.legend()
    save(fig, out / "gradcheck-step-size.png")
    reset_names()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "figures", help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tinyconv.set_seed(0)
    im2col_figure(args.out)
    conv_input_gradient_figure(args.out)
    receptive_field_figure(args.out)
    initialization_figure(args.out)
    step_size_figure(args.out)


if __name__ == "__main__":
    main()
