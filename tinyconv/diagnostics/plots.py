"""matplotlib figures: simulated cells with their labels, augmentations, training curves, gradients.

Every function writes a PNG and closes its figure, so it can run in a loop or a test without
piling up open figures. It uses the Agg backend, which needs no display.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def to_rgb(image: np.ndarray, stretch: bool = True) -> np.ndarray:
    """An (H, W, C) fluorescence image as (H, W, 3) RGB in [0, 1] for display.

    Three channels (DNA, actin, marker) become blue, green and magenta, the usual false colours;
    one channel is shown in grey; two as blue (channel 0) and green (channel 1); of more than three
    (your own images), the first three. Each channel is stretched to its 99.5th percentile, as
    microscopy viewers do; with ``stretch=False`` values in [0, 1] are shown as they are, so images
    can be compared by brightness.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] < 1:
        raise ValueError(f"plots.to_rgb: expected an (H, W, C) image, got {image.shape}")
    image = image[:, :, :3]
    top = np.percentile(image, 99.5, axis=(0, 1)) if stretch else 1.0
    image = np.clip(image / np.maximum(top, 1e-6), 0.0, 1.0)
    c = image.shape[-1]
    if c == 1:
        return np.repeat(image, 3, axis=-1)
    colours = np.array([[0.1, 0.35, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])[:c]  # (C, RGB)
    return np.clip(image @ colours, 0.0, 1.0)


def plot_cell_grid(images: np.ndarray, labels: np.ndarray, label_names, path, ncols: int = 6,
                   max_images: int = 24, title: str | None = None) -> Path:
    """A grid of images, each captioned with the names of its positive labels.

    Parameters
    ----------
    images : (N, H, W, C) array
    labels : (N, L) array in {0, 1}
    label_names : sequence of L names
    path : where to write the PNG (parent folders are created)
    ncols, max_images : layout; the first ``max_images`` images are shown
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or labels.ndim != 2 or len(images) != len(labels):
        raise ValueError(f"plot_cell_grid: expected images (N, H, W, C) and labels (N, L), "
                         f"got {images.shape} and {labels.shape}")
    if labels.shape[1] != len(label_names):
        raise ValueError(f"plot_cell_grid: {labels.shape[1]} label columns but {len(label_names)} label names")
    plt = _pyplot()
    count = min(len(images), max_images)
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.8 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        ax.imshow(to_rgb(images[k]), interpolation="nearest")
        names = [name for name, on in zip(label_names, labels[k]) if on]
        ax.set_title("\n".join(names) if names else "(none)", fontsize=6.5, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_augmentations(generator, image: np.ndarray, path, n: int = 8, seed: int = 0) -> Path:
    """The original image followed by ``n`` random augmentations of it (seeds ``seed`` .. ``seed + n - 1``).

    ``generator`` is an ``ImageDataGenerator``; ``image`` is one (H, W, C) image. Standardisation
    is not applied, so the panels show what the network sees before normalisation.
    """
    image = np.asarray(image, dtype=np.float32)
    plt = _pyplot()
    fig, axes = plt.subplots(1, n + 1, figsize=(2.0 * (n + 1), 2.4), squeeze=False)
    panels = [("original", image)]
    for k in range(n):
        params = generator.get_random_transform(image.shape, seed=seed + k)
        caption = (f"rot {params['theta']:+.0f}, zoom {params['zx']:.2f}/{params['zy']:.2f}"
                   + (", flip" if params["flip_horizontal"] else ""))
        panels.append((caption, generator.apply_transform(image, params)))
    for ax, (caption, panel) in zip(axes.flat, panels):
        ax.imshow(to_rgb(panel), interpolation="nearest")
        ax.set_title(caption, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- training: learning curves, per-label AUC, predictions, filters, saliency -------------------

def plot_learning_curves(history: dict, path, title: str | None = None) -> Path:
    """Loss and accuracy per epoch, training and validation, side by side.

    ``history`` maps ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (any present) to per-epoch
    lists, as ``History.history`` or a ``CSVLogger`` file read back. Validation loss rising while
    training loss falls is overfitting; both flat and high is underfitting.
    """
    if not history.get("loss"):
        raise ValueError("plot_learning_curves: the history has no 'loss' values")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "o-"), (f"val_{metric}", "s--")):
            if history.get(key):
                ax.plot(epochs[:len(history[key])], history[key], style, ms=3,
                        label="train" if key == metric else "valid")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("binary cross-entropy" if metric == "loss" else "binary accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_gradient_norms(rows, path, title: str | None = None) -> Path:
    """Per-layer gradient norms and update/weight ratios, one line per epoch (``GradientNormLogger``).

    ``rows``: the logger's ``rows``, or the path of its CSV file. The x axis is the layer's depth
    (input on the left); both y axes are logarithmic, so a gradient that shrinks by a constant
    factor per layer (vanishing) is a straight falling line towards the input.
    """
    if isinstance(rows, (str, Path)):
        with open(rows, newline="") as f:
            rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError("plot_gradient_norms: no rows to plot")
    epochs = sorted({int(r["epoch"]) for r in rows})
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(epochs)))
    for epoch, color in zip(epochs, colors):
        mine = sorted((r for r in rows if int(r["epoch"]) == epoch), key=lambda r: int(r["depth"]))
        depth = [int(r["depth"]) for r in mine]
        for ax, key in zip(axes, ("gradient_norm", "update_ratio")):
            ax.plot(depth, [float(r[key]) for r in mine], "o-", ms=3, color=color, label=f"epoch {epoch + 1}")
    names = [r["layer"] for r in sorted((r for r in rows if int(r["epoch"]) == epochs[0]), key=lambda r: int(r["depth"]))]
    for ax, label in zip(axes, ("gradient norm ||dL/dw||", "update / weight  ||dw|| / ||w||")):
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("layer (input on the left)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_label_auc(aucs, label_names, path, baseline_aucs=None) -> Path:
    """Horizontal bars of each label's test ROC AUC (and a baseline's, when given); 0.5 is chance."""
    aucs = np.asarray(aucs, dtype=float)
    if len(aucs) != len(label_names):
        raise ValueError(f"plot_label_auc: {len(aucs)} AUCs but {len(label_names)} label names")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(aucs) + 1.2))
    rows = np.arange(len(aucs))
    height = 0.4 if baseline_aucs is not None else 0.7
    ax.barh(rows, aucs, height=height, color="tab:blue", label=f"CNN (mean {np.nanmean(aucs):.3f})")
    if baseline_aucs is not None:
        baseline_aucs = np.asarray(baseline_aucs, dtype=float)
        ax.barh(rows + height, baseline_aucs, height=height, color="tab:gray",
                label=f"baseline (mean {np.nanmean(baseline_aucs):.3f})")
    ax.axvline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
    ax.set_yticks(rows + (height / 2 if baseline_aucs is not None else 0), label_names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)  # from 0: bar lengths compare honestly; a missing bar is "n/a (one class only)"
    ax.set_xlabel("test ROC AUC (no bar: n/a, the test split has one class of that label)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_predictions(images, labels, probabilities, label_names, path, ncols: int = 4,
                     max_images: int = 12, threshold: float = 0.5) -> Path:
    """Test cells captioned with each label that is true or predicted (``p > threshold``).

    A caption line reads ``name p``: blue when right (true and predicted), vermillion when predicted
    but false, reddish purple when true but missed (Okabe and Ito's colours, told apart with any
    colour vision).
    """
    images, labels, probabilities = np.asarray(images), np.asarray(labels), np.asarray(probabilities)
    if labels.shape != probabilities.shape or len(images) != len(labels):
        raise ValueError(f"plot_predictions: expected images (N, H, W, C) and labels and probabilities (N, L), "
                         f"got {images.shape}, {labels.shape} and {probabilities.shape}")
    plt = _pyplot()
    count = min(len(images), max_images)
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 2.2 * nrows + 0.4), squeeze=False,
                             gridspec_kw={"wspace": 1.3})
    colours = {(True, True): "#0072B2", (False, True): "#D55E00", (True, False): "#CC79A7"}
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        ax.imshow(to_rgb(images[k]), interpolation="nearest")
        lines = [(f"{name} {p:.2f}", colours[(bool(t), bool(p > threshold))])
                 for name, t, p in zip(label_names, labels[k], probabilities[k]) if t or p > threshold]
        for i, (text, colour) in enumerate(lines):
            ax.text(1.04, 1 - 0.09 * i, text, color=colour, fontsize=6.5, va="top", transform=ax.transAxes)
    fig.suptitle("test cells: blue = found, vermillion = false alarm, purple = missed (p = predicted probability)",
                 fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.9, top=0.92, bottom=0.02, hspace=0.15)
    return _save(fig, plt, path)


def plot_filters(kernel, path, channel_names=None) -> Path:
    """The first convolution's filters, one tile each: kernel (KH, KW, C, F).

    Three-channel filters are drawn in the image colours (``to_rgb``'s false colours), each
    filter stretched so that 0 is mid-grey; otherwise each input channel gets its own row of tiles.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"plot_filters: expected a conv kernel (KH, KW, C, F), got shape {kernel.shape}")
    kh, kw, c, f = kernel.shape
    plt = _pyplot()
    ncols = int(np.ceil(np.sqrt(f)))
    nrows = -(-f // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.0 * ncols, 1.0 * nrows + 0.5), squeeze=False)
    colours = np.array([[0.1, 0.35, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= f:
            continue
        w = kernel[..., k] / (np.abs(kernel[..., k]).max() + 1e-12)  # in [-1, 1]
        if c == 3:
            tile = np.clip(0.5 + 0.5 * (w @ colours), 0, 1)
            ax.imshow(tile, interpolation="nearest")
        else:
            ax.imshow(np.concatenate(list(np.moveaxis(w, -1, 0)), axis=1), cmap="coolwarm", vmin=-1, vmax=1,
                      interpolation="nearest")
    names = ", ".join(channel_names) if channel_names else f"{c} channels"
    fig.suptitle(f"first-layer filters ({f} x {kh}x{kw}x{c}; {names}; grey = 0)", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_saliency(images, maps: dict, path, probabilities: dict | None = None, labels: dict | None = None) -> Path:
    """Each image (a row) next to its saliency map for each label (columns).

    ``maps`` maps a label name to (N, H, W) saliency maps of the N ``images``; ``probabilities``
    and ``labels`` (optional) map the same names to (N,) predicted probabilities and true 0/1
    labels, shown in the titles: a map of a label the cell does not have shows what would have
    raised its score, not where the feature is.
    """
    images = np.asarray(images)
    names = list(maps)
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(2.1 * (len(names) + 1), 2.2 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(to_rgb(images[i]), interpolation="nearest")
        axes[i, 0].set_title("cell", fontsize=8)
        for j, name in enumerate(names):
            ax = axes[i, j + 1]
            ax.imshow(maps[name][i], cmap="inferno", interpolation="nearest")
            said = [f"p = {probabilities[name][i]:.2f}"] if probabilities else []
            said += [f"true: {'yes' if labels[name][i] else 'no'}"] if labels else []
            ax.set_title("\n".join([name, ", ".join(said)] if said else [name]), fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    key = "; p: predicted probability, true: the label in the data" if probabilities or labels else ""
    fig.suptitle(f"saliency: |d score / d pixel| (brighter = the label's score changes more){key}", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_feature_maps(image, maps: dict, path, channels: int = 8) -> Path:
    """One image and, a row per layer, its most active feature maps.

    ``maps`` maps a layer name to its (OH, OW, C) output for ``image`` (``feature_maps.feature_maps``);
    each row shows the ``channels`` channels with the largest mean activation, each on its own scale
    (brighter = stronger), so the rows compare where the layers respond, not how strongly.
    """
    if not maps:
        raise ValueError("plot_feature_maps: maps is empty; expected layer name -> (OH, OW, C) arrays")
    for name, fmap in maps.items():
        if np.ndim(fmap) != 3:
            raise ValueError(f"plot_feature_maps: the map of {name!r} must be (OH, OW, C), got shape "
                             f"{np.shape(fmap)}")
    plt = _pyplot()
    fig, axes = plt.subplots(len(maps), channels + 1, figsize=(1.3 * (channels + 1), 1.45 * len(maps)),
                             squeeze=False)
    for row, (name, fmap) in zip(axes, maps.items()):
        fmap = np.asarray(fmap, dtype=np.float64)
        row[0].imshow(to_rgb(image), interpolation="nearest")
        row[0].set_title(f"{name}\n{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}", fontsize=6.5)
        strongest = np.argsort(-fmap.mean(axis=(0, 1)), kind="stable")[:channels]
        for ax, channel in zip(row[1:], strongest):
            ax.imshow(fmap[:, :, channel], cmap="viridis", interpolation="nearest")
            ax.set_title(f"ch {channel}", fontsize=6.5)
        for ax in row:
            ax.axis("off")
    fig.suptitle("feature maps of one cell: each layer's most active channels (brighter = stronger)", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


# --- generated cells: image grids and the GAN's curves ---------------------------------------------

def plot_image_rows(rows: dict, path, ncols: int = 8, title: str | None = None) -> Path:
    """Named rows of images in [0, 1] (``{"real": (N, H, W, C), "generated": ...}``), shown unstretched,
    ``ncols`` images a row, so real and generated cells can be compared pixel for pixel."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.2 * ncols, 1.35 * len(rows)), squeeze=False)
    for axes_row, (name, images) in zip(axes, rows.items()):
        for k, ax in enumerate(axes_row):
            ax.axis("off")
            if k < len(images):
                ax.imshow(to_rgb(images[k], stretch=False), interpolation="nearest")
        axes_row[0].set_title(name, fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_gan_history(history: dict, path) -> Path:
    """Per epoch: both losses, the discriminator's mean belief on real and generated images, and the
    Fréchet distance. ``history`` holds lists under ``d_loss, g_loss, d_real, d_fake, frechet``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = np.arange(1, len(history["d_loss"]) + 1)
    panels = [("loss (binary cross-entropy)", (("d_loss", "discriminator"), ("g_loss", "generator"))),
              ("D's mean belief 'real'", (("d_real", "on real"), ("d_fake", "on generated"))),
              ("Fréchet distance to real cells", (("frechet", "generated vs real"),))]
    for ax, (ylabel, series) in zip(axes, panels):
        for key, label in series:
            ax.plot(epochs, history[key], "o-", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[2].set_yscale("log")
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_label_prevalence(real, generated, label_names, path) -> Path:
    """Per label, the fraction of real cells that show it beside the fraction of generated cells
    that a classifier says show it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.6))
    positions = np.arange(len(label_names))
    ax.bar(positions - 0.2, real, width=0.4, label="real cells")
    ax.bar(positions + 0.2, generated, width=0.4, label="generated cells (as the classifier sees them)")
    ax.set_xticks(positions)
    ax.set_xticklabels(label_names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("prevalence")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, plt, path)
