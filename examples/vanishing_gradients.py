"""Vanishing gradients, measured: one deep stack trained four ways on the simulated cells.

The same 13-convolution network (16 filters each; a first convolution, then three stages of 4
with a max-pool between them; global average pooling; an 18-label sigmoid head) is trained
briefly in four versions:

1. ``sigmoid``:    Conv2D -> sigmoid, thirteen times (the textbook's deep sigmoid network);
2. ``leaky_relu``: Conv2D -> LeakyReLU (the seed's activation);
3. ``batchnorm``:  Conv2D -> BatchNormalization -> LeakyReLU;
4. ``residual``:   the batchnorm version in blocks of two convolutions whose input is added to
                   their output (``Add()([x, block(x)])``), as in a ResNet.

Each run records the per-layer gradient norms (``GradientNormLogger``) and the learning curves.
One figure puts side by side the gradient norm of every convolution (input on the left) in the
first epoch, and the validation loss per epoch; a table gives the first and last convolution's
gradient norms, their ratio, and the final losses and mean AUC. ``docs/vanishing-gradients.md``
reads the figure.

Plain SGD with momentum trains every version, so that a small gradient means a small step (Adam
divides each step by the gradient's own running size, which hides the lesson).

Usage::

    python examples/vanishing_gradients.py            # about a minute on 2 idle CPU cores
    python examples/vanishing_gradients.py --quick    # a smoke run, under a minute
    python examples/vanishing_gradients.py --out runs # the folder that receives runs/<timestamp>/
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

import tinyconv
from tinyconv import Model
from tinyconv.diagnostics import metrics, plots
from tinyconv.callbacks import CSVLogger, GradientNormLogger
from tinyconv.data import cells, split
from tinyconv.layers import (Activation, Add, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, Input,
                             LeakyReLU, MaxPooling2D, reset_names)
from tinyconv.optimizers import SGD

VARIANTS = ("sigmoid", "leaky_relu", "batchnorm", "residual")
DEFAULTS = {"epochs": 4, "n_samples": 2500, "depth": 12, "filters": 16, "batch_size": 32}
QUICK = {"epochs": 2, "n_samples": 240, "depth": 12, "filters": 8}
LEARNING_RATE, MOMENTUM = 0.05, 0.9


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, help=f"epochs per version (default {DEFAULTS['epochs']})")
    parser.add_argument("--n-samples", type=int, help=f"images to simulate (default {DEFAULTS['n_samples']})")
    parser.add_argument("--depth", type=int, help="convolutions after the first one, a multiple of 4 "
                                                  f"(default {DEFAULTS['depth']})")
    parser.add_argument("--filters", type=int, help=f"filters per convolution (default {DEFAULTS['filters']})")
    parser.add_argument("--batch-size", type=int, help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--seed", type=int, default=0, help="seeds the simulation, initialisation and shuffling")
    parser.add_argument("--out", default="runs", help="the folder that receives runs/<timestamp>/")
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs, for smoke tests")
    args = parser.parse_args(argv)
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.depth < 4 or args.depth % 4:
        parser.error(f"--depth must be a positive multiple of 4 (a max-pool follows every 4), got {args.depth}")
    return args


def build(variant: str, input_shape: tuple, n_labels: int, depth: int, filters: int) -> Model:
    """A first convolution, then ``depth`` more in stages of 4 with a max-pool between stages,
    global average pooling and the sigmoid head."""
    inputs = Input(input_shape)
    x = unit(variant, convolution(variant, filters)(inputs))  # brings the channels to ``filters``
    for i in range(0, depth, 2):
        if i and i % 4 == 0:
            x = MaxPooling2D()(x)
        if variant == "residual":  # a block of two convolutions, its input added to its output
            h = unit(variant, convolution(variant, filters)(x))
            h = BatchNormalization()(convolution(variant, filters)(h))
            x = LeakyReLU()(Add()([x, h]))
        else:
            x = unit(variant, convolution(variant, filters)(x))
            x = unit(variant, convolution(variant, filters)(x))
    outputs = Dense(n_labels, activation="sigmoid")(GlobalAveragePooling2D()(x))
    return Model(inputs, outputs, name=variant)


def convolution(variant: str, filters: int) -> Conv2D:
    # No bias before batch normalization: it would subtract it again (the bias gets no gradient).
    return Conv2D(filters, 3, padding="same", use_bias=variant in ("sigmoid", "leaky_relu"))


def unit(variant: str, x):
    """What follows a convolution: an activation, with batch normalization before it from version 3 on."""
    if variant == "sigmoid":
        return Activation("sigmoid")(x)
    if variant == "leaky_relu":
        return LeakyReLU()(x)
    return LeakyReLU()(BatchNormalization()(x))


def train(variant: str, args, data, folder: Path) -> dict:
    (x_train, y_train), (x_valid, y_valid) = data
    tinyconv.set_seed(args.seed)  # the same initial draws and batches for every version
    reset_names()  # layer names in the logs start at conv2d again
    model = build(variant, x_train.shape[1:], y_train.shape[1], args.depth, args.filters)
    model.compile(SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM), "binary_crossentropy", metrics=["accuracy"])
    gradients = GradientNormLogger(folder / f"{variant}-gradients.csv")
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
                        validation_data=(x_valid, y_valid),
                        callbacks=[gradients, CSVLogger(folder / f"{variant}-history.csv")])
    seconds = time.perf_counter() - start
    convolutions = [layer.name for layer in model.layers if isinstance(layer, Conv2D)]
    first_epoch = {row["layer"]: row["gradient_norm"] for row in gradients.rows if row["epoch"] == 0}
    norms = [first_epoch[name] for name in convolutions]
    auc = float(np.nanmean(metrics.roc_auc(y_valid, model.predict(x_valid, batch_size=args.batch_size))))
    result = {"variant": variant, "params": model.count_params(), "convolutions": len(convolutions),
              "first_conv_gradient": norms[0], "last_conv_gradient": norms[-1], "first_over_last": norms[0] / norms[-1],
              "train_loss": history.history["loss"][-1], "val_loss": history.history["val_loss"][-1],
              "val_auc": auc, "seconds": seconds, "gradient_norms": norms, "history": history.history}
    print(f"{variant:<11} {len(convolutions)} convolutions, {model.count_params():,} parameters: "
          f"|grad| first conv {norms[0]:.2e}, last conv {norms[-1]:.2e} (ratio {norms[0] / norms[-1]:.2e}); "
          f"val loss {result['val_loss']:.4f}, val AUC {auc:.3f} ({seconds:.0f} s)", flush=True)
    return result


def plot(results: list[dict], path: Path) -> Path:
    """Left: each convolution's gradient norm in the first epoch (log scale). Right: validation loss."""
    plt = plots._pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        norms = result["gradient_norms"]
        left.plot(range(1, len(norms) + 1), norms, "o-", ms=4, label=result["variant"])
        epochs = np.arange(1, len(result["history"]["val_loss"]) + 1)
        right.plot(epochs, result["history"]["val_loss"], "o-", ms=4, label=f"{result['variant']} (valid)")
        right.plot(epochs, result["history"]["loss"], ":", color=right.lines[-1].get_color(), label="_train")
    left.set_yscale("log")
    left.set_xlabel("convolution (1 = next to the input)")
    left.set_ylabel("gradient norm ||dL/dW||, first epoch")
    left.set_title("per-layer gradient norms")
    right.set_xlabel("epoch")
    right.set_ylabel("binary cross-entropy (solid: valid, dotted: train)")
    right.set_title("learning curves")
    right.xaxis.get_major_locator().set_params(integer=True)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return plots._save(fig, plt, path)


COLUMNS = ("variant", "params", "convolutions", "first_conv_gradient", "last_conv_gradient", "first_over_last",
           "train_loss", "val_loss", "val_auc", "seconds")


def write_table(results: list[dict], folder: Path) -> None:
    with open(folder / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    lines = ["| version | parameters | grad. norm, first conv | grad. norm, last conv | first / last | "
             "train loss | valid loss | valid mean AUC | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['first_conv_gradient']:.2e} | "
                     f"{r['last_conv_gradient']:.2e} | {r['first_over_last']:.2e} | {r['train_loss']:.4f} | "
                     f"{r['val_loss']:.4f} | {r['val_auc']:.3f} | {r['seconds']:.0f} |")
    (folder / "table.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    while folder.exists():
        folder = folder.with_name(folder.name + "-1")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in vars(args).items() if k != "out"}, indent=2))
    started = time.perf_counter()
    print(f"Run folder: {folder}\nSimulating {args.n_samples} cells ...", flush=True)
    images, labels = cells.generate(args.n_samples, image_size=32, channels=3, seed=args.seed)
    (x_train, y_train), (x_valid, y_valid), _ = split(images, labels.astype(np.float32), random_state=42)
    mean, std = x_train.mean(axis=(0, 1, 2)), x_train.std(axis=(0, 1, 2))  # training statistics only
    data = ((x_train - mean) / std, y_train), ((x_valid - mean) / std, y_valid)
    print(f"{len(x_train)} training and {len(x_valid)} validation images; SGD(lr={LEARNING_RATE}, "
          f"momentum={MOMENTUM}), {args.epochs} epochs per version\n", flush=True)
    results = [train(variant, args, data, folder) for variant in VARIANTS]
    write_table(results, folder)
    print(f"\nWrote {plot(results, folder / 'vanishing_gradients.png')}")
    print(f"Everything is in {folder} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
