"""Train the seed CNN to recognise 18 features of simulated cells, then report and plot.

The whole flow, in order:

1. simulate the cell images (or load ``--data-dir`` when it names an existing data set), cached
   under ``data/``; or read your own images with ``--images DIR --labels CSV``
   (``tinyconv.data.load_images``: PNG/JPEG/TIFF, a CSV of 0/1 labels, see docs/own-images.md);
2. split 80/10/10 with ``random_state=42``;
3. fit an ``ImageDataGenerator`` (the seed's augmentation, featurewise centre and std) on the
   training images only, and standardise the valid and test images with the same statistics;
4. build the seed's CNN and print its summary;
5. train it: Adam(lr=0.001), binary cross-entropy, batch 32, EarlyStopping(val_loss, patience 10),
   a CSV log and a checkpoint after every epoch, under ``runs/<timestamp>/``;
6. evaluate it on the test split: a per-label table (prevalence, binary accuracy, ROC AUC, F1),
   compared with a logistic regression on global image statistics; then the pictures.

Usage::

    python examples/train_cells.py                  # the default run (minutes on a laptop CPU)
    python examples/train_cells.py --quick          # a smoke test: tiny data, 2 epochs
    python examples/train_cells.py --epochs 100     # the seed's schedule (early stopping ends it sooner)
    python examples/train_cells.py --resume runs/20240101-120000   # continue after Ctrl-C
    python examples/train_cells.py --images my_cells --labels my_cells/labels.csv   # your own images

Ctrl-C stops at the end of the running batch, saves a checkpoint and prints the command that resumes.
When the output is not a terminal (a log file, CI), progress is one plain line per epoch.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import tinyconv
from tinyconv import Model, distributed
from tinyconv.storage import atomic
from tinyconv.training import checkpoint, runs
from tinyconv.diagnostics import metrics, plots
from tinyconv.callbacks import (CSVLogger, EarlyStopping, ModelCheckpoint, TerminateOnNaN, TrainingCheckpoint,
                                read_csv_log)
from tinyconv.data import ImageDataGenerator, cells, load_images, split
from tinyconv.data.baseline import logistic_regression_baseline
from tinyconv.diagnostics.feature_maps import feature_maps
from tinyconv.layers import Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D, Normalization
from tinyconv.optimizers import Adam
from tinyconv.diagnostics.saliency import saliency_map

# 8000 images give 6400 training images, 200 batches per epoch; 9 epochs (1800 steps) reach the
# quality target (see docs/training.md) in about 3 minutes on a 2-core CPU, simulation included.
DEFAULTS = {"epochs": 9, "n_samples": 8000, "image_size": 32, "batch_size": 32, "device": "cpu", "fit": "resize",
            "seed": 0}
QUICK = {"epochs": 2, "n_samples": 300, "image_size": 32}
SALIENCY_LABELS = ("binucleated", "mitotic", "nuclear_translocation", "membrane_marker")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=positive_int,
                        help=f"the last epoch, counted from 1 (default {DEFAULTS['epochs']}, "
                             f"{QUICK['epochs']} with --quick); with --resume, to train longer")
    parser.add_argument("--batch-size", type=positive_int, help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--image-size", type=positive_int, help=f"pixels per side (default {DEFAULTS['image_size']})")
    parser.add_argument("--n-samples", type=positive_int,
                        help=f"images to simulate (default {DEFAULTS['n_samples']}, {QUICK['n_samples']} with --quick)")
    parser.add_argument("--device", choices=("cpu", "gpu"), help=f"default {DEFAULTS['device']}")
    parser.add_argument("--data-dir", help="an existing data set folder to load, or where to cache the simulation")
    own = parser.add_argument_group("your own images (instead of the simulation)")
    own.add_argument("--images", metavar="DIR", help="a folder of PNG/JPEG/TIFF images (needs --labels)")
    own.add_argument("--labels", metavar="CSV", help="file name, then one 0/1 column per label (needs --images)")
    own.add_argument("--channels", type=int, nargs="+", metavar="I", help="channel indices to keep (default all)")
    own.add_argument("--intensity-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help="fixed intensity range for every image (default: per-image percentiles 1 and 99.8)")
    own.add_argument("--fit", choices=("resize", "crop"),
                     help="bring images to --image-size by resizing a centred square, or by cutting the centre "
                          f"(default {DEFAULTS['fit']})")
    parser.add_argument("--out", default="runs", help="the folder that receives <out>/<timestamp>/ (default %(default)s)")
    parser.add_argument("--seed", type=int, help="seeds the simulation, initialisation, shuffling, "
                                                "augmentation and dropout (default 0)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs, for smoke tests")
    parser.add_argument("--distributed", action="store_true",
                        help="train on every rank of an MPI job: mpiexec -n K python examples/train_cells.py "
                             "--distributed (the mpi extra; docs/data-parallel.md)")
    args = parser.parse_args(argv)
    if bool(args.images) != bool(args.labels):
        parser.error("--images and --labels go together")
    if args.images and args.data_dir:
        parser.error("--images reads your own images, --data-dir a data set folder: give one of them")
    return args


def fill_defaults(args: argparse.Namespace) -> None:
    """Sizes left unset take the quick or the default values."""
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


# --- 1-3: data ------------------------------------------------------------------------------------

def load_or_simulate(args) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N, H, W, C) float32, labels (N, L), and what describes them: ``label_names``,
    ``channel_names`` (the simulator's) and ``pixel_types`` (the files' bit depths; None when simulated)."""
    if args.images:
        images, labels, meta = load_images(args.images, args.labels, image_size=args.image_size,
                                           channels=args.channels, intensity_range=args.intensity_range,
                                           fit=args.fit)
        print(f"Data: {args.images} holds {len(images)} images listed in {args.labels}, read as "
              f"{images.shape[1:]} with {labels.shape[1]} labels")
        return images, labels.astype(np.float32), {"label_names": meta["label_names"], "channel_names": None,
                                                   "pixel_types": sorted(set(meta["pixel_types"]))}
    # The simulator's version is part of the cache's name: a new simulator never reuses old images.
    folder = Path(args.data_dir or f"data/cells-v{cells.VERSION}-n{args.n_samples}-{args.image_size}px-seed{args.seed}")
    # An existing data set is read as it is; two runs started together on an empty cache share it.
    images, labels, meta = cells.load_or_make(folder, n=args.n_samples, image_size=args.image_size,
                                              seed=args.seed, verbose=True)
    print(f"Data: {folder} holds {len(images)} images of shape {images.shape[1:]} with {labels.shape[1]} labels")
    images = np.asarray(images, dtype=np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    names = meta.get("label_names") or [f"label_{i}" for i in range(labels.shape[1])]
    return images, labels.astype(np.float32), {"label_names": names, "channel_names": meta.get("channel_names"),
                                               "pixel_types": None}


def make_generator() -> ImageDataGenerator:
    """The seed's augmentation, plus the zero mean and unit variance its comment asks for."""
    return ImageDataGenerator(
        featurewise_center=True,
        featurewise_std_normalization=True,
        rotation_range=10,
        zoom_range=[0.9, 1.1],
        width_shift_range=0.1,
        height_shift_range=0.1,
        shear_range=0.1,
        horizontal_flip=True,
        vertical_flip=False,
    )


# --- 4: the seed's CNN -----------------------------------------------------------------------------

def build_model(input_shape: tuple, n_labels: int, preprocessing=None) -> Model:
    """The seed's CNN, compiled; ``preprocessing`` (a layer) first when given (see ``model_file``)."""
    inputs = Input(shape=input_shape)
    x = inputs if preprocessing is None else preprocessing(inputs)
    x = Conv2D(filters=64, kernel_size=(3, 3), padding='same')(x)
    x = LeakyReLU()(x)
    x = Conv2D(filters=64, kernel_size=(3, 3), padding='same')(x)
    x = LeakyReLU()(x)
    x = MaxPooling2D((2, 2))(x)
    x = Conv2D(filters=128, kernel_size=(3, 3), padding='same')(x)
    x = LeakyReLU()(x)
    x = Conv2D(filters=128, kernel_size=(3, 3), padding='same')(x)
    x = LeakyReLU()(x)
    x = MaxPooling2D((2, 2))(x)
    x = Flatten()(x)
    x = Dense(units=128)(x)
    x = LeakyReLU()(x)
    x = Dropout(rate=0.5)(x)
    outputs = Dense(units=n_labels, activation='sigmoid')(x)
    model = Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=Adam(lr=0.001), loss='binary_crossentropy', metrics=['accuracy'])
    return model


def model_file(model: Model, generator: ImageDataGenerator, folder: Path, about: dict) -> Path:
    """``<run>/model.keras``: the trained network behind a Normalization layer that holds the training
    images' statistics, so it takes images as ``load_images`` returns them and needs nothing else (a
    Keras 3 ``load_model`` reads it too); the label names, one per line, in ``labels.txt``; and for
    images read from files, their pixel types in ``training_images.json``, which ``predict_cells.py``
    holds new images to."""
    # The generator divides by std + 1e-6: a variance of (std + 1e-6)^2 makes the layer divide alike.
    standardize = Normalization(mean=generator.mean.ravel(), variance=(generator.std.ravel() + 1e-6) ** 2)
    deployable = build_model(model.input_shape[1:], model.output_shape[-1], preprocessing=standardize)
    deployable.set_weights(model.get_weights())
    deployable.save(folder / "model.keras")
    text = "".join(f"{name}\n" for name in about["label_names"]).encode("utf-8")
    atomic.write_file(folder / "labels.txt", lambda f: f.write(text), "labels.txt")
    if about["pixel_types"] is not None:
        described = json.dumps({"pixel_types": about["pixel_types"]}).encode("utf-8")
        atomic.write_file(folder / "training_images.json", lambda f: f.write(described), "training_images.json")
    return folder / "model.keras"


def warm_up(model: Model, generator: ImageDataGenerator, images: np.ndarray) -> None:
    """Run every kernel once on two images, so that numba's one-time compilation happens here,
    announced, rather than silently inside the first batch. Touches no random generator."""
    if tinyconv.get_device() != "cpu":
        return
    print("Preparing the numba kernels (compiled on the first run, then cached on disk) ...", end=" ", flush=True)
    start = time.perf_counter()
    sample = images[:2]
    model.backward_logits(np.ones_like(tinyconv.to_numpy(model.forward_logits(sample))))
    generator.apply_transform(sample[0], generator.get_random_transform(sample[0].shape, seed=0))
    scratch = np.zeros(4, dtype=model.dtype)
    Adam().step([scratch], [scratch.copy()])  # a throwaway optimizer: the model's keeps its state
    print(f"ready in {time.perf_counter() - start:.1f} s")


# --- 6: report -----------------------------------------------------------------------------------

REPORT_NOTES = """\
How to read this table (the test split: images the network never trained on):

- prevalence: the fraction of test images that have the label;
- binary accuracy: the fraction of test images whose call (probability > 0.5) is right; a label present in
  5% of images scores 0.95 by always answering "no", so read it beside the prevalence;
- ROC AUC: the probability that a random image with the label gets a higher score than a random image
  without it (0.5 is chance, 1 is perfect); "n/a (one class only)" when the test images all have the
  label, or all lack it, so no such pair exists;
- F1 at 0.5: the harmonic mean of precision and recall of the calls; n/a when the label is never present
  and never called;
- baseline AUC: a logistic regression on each image's global channel statistics (mean, std, percentiles),
  trained on the same split: what the label's brightness alone tells. A CNN that does not beat it has
  learnt nothing about shape.
"""


def _value(x: float, missing: str = "n/a") -> str:
    return missing if not np.isfinite(x) else f"{x:.3f}"


def write_report(rows: list[dict], baseline_auc: np.ndarray, folder: Path, test_loss: float,
                 test_accuracy: float) -> None:
    """Print the per-label table and save it as report.csv and report.md (with what each column means)."""
    header = ["label", "prevalence", "accuracy", "auc", "f1", "baseline_auc"]
    table = [{**row, "baseline_auc": float(b)} for row, b in zip(rows, [*baseline_auc, metrics.finite_mean(baseline_auc)])]
    with open(folder / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(table)
    lines = [f"Test loss (binary cross-entropy) {test_loss:.4f}, binary accuracy {test_accuracy:.4f}.", "",
             "| label | prevalence | binary accuracy | ROC AUC | F1 at 0.5 | baseline AUC |",
             "|---|---:|---:|---:|---:|---:|"]
    one_class = "n/a (one class only)"
    for row in table:
        name = f"**{row['label']}**" if row["label"] == "mean" else row["label"]
        lines.append(f"| {name} | {row['prevalence']:.3f} | {row['accuracy']:.3f} | {_value(row['auc'], one_class)} | "
                     f"{_value(row['f1'])} | {_value(row['baseline_auc'], one_class)} |")
    (folder / "report.md").write_text("\n".join(lines) + "\n\n" + REPORT_NOTES)
    width = max(len(r["label"]) for r in table)
    print(f"\n{'label':<{width}}  prev.   acc.    AUC     F1     baseline AUC")
    for row in table:
        if row["label"] == "mean":
            print("-" * (width + 48))
        print(f"{row['label']:<{width}}  {row['prevalence']:.3f}  {row['accuracy']:.3f}  {_value(row['auc']):>5}  "
              f"{_value(row['f1']):>5}  {_value(row['baseline_auc']):>5}")


def make_plots(model, x_test, x_test_std, y_test, p_test, names, channel_names, rows, baseline_auc,
               folder: Path) -> list[Path]:
    plot_dir = folder / "plots"
    paths = [
        plots.plot_learning_curves(read_csv_log(folder / "history.csv"), plot_dir / "learning_curves.png"),
        plots.plot_label_auc([r["auc"] for r in rows[:-1]], names, plot_dir / "label_auc.png", baseline_auc),
        plots.plot_predictions(x_test[:12], y_test[:12], p_test[:12], names, plot_dir / "test_predictions.png"),
        plots.plot_filters(model.layers[1].get_weights()[0], plot_dir / "first_layer_filters.png", channel_names),
    ]
    chosen = [name for name in SALIENCY_LABELS if name in names] or list(names[:4])
    # Cells that show at least one of the chosen features, so the maps have something to point at.
    shows = np.flatnonzero(y_test[:, [names.index(n) for n in chosen]].sum(1) > 0)[:4]
    maps = {name: saliency_map(model, x_test_std[shows], names.index(name)) for name in chosen}
    probabilities = {name: p_test[shows, names.index(name)] for name in chosen}
    truth = {name: y_test[shows, names.index(name)] for name in chosen}
    paths.append(plots.plot_saliency(x_test[shows], maps, plot_dir / "saliency.png", probabilities, truth))
    cell = shows[0] if len(shows) else 0
    paths.append(plots.plot_feature_maps(x_test[cell], feature_maps(model, x_test_std[cell]),
                                         plot_dir / "feature_maps.png"))
    return paths


# --- the run ---------------------------------------------------------------------------------------

def settings_of(args) -> dict:
    """What config.json keeps: the run's settings, not where its folder is nor how many ranks ran it."""
    return {k: v for k, v in vars(args).items() if k not in ("resume", "out", "distributed")}


def run_folder(args) -> Path:
    """A new ``<out>/<timestamp>/`` with the run's settings in config.json; or, with ``--resume``, the
    old folder, whose settings come back (the data and model must be the same: a different value is
    refused), except ``--epochs`` (to train longer) and ``--device`` when given."""
    try:
        if not args.resume:
            fill_defaults(args)
            # Rank 0 names the folder; the others train without writing into it.
            folder = runs.create(args.out, settings_of(args)) if distributed.distribution().is_writer else ""
            return Path(distributed.distribution().broadcast_text(str(folder)))
        folder = Path(args.resume)
        if not (folder / "checkpoint.npz").is_file():
            sys.exit(f"--resume {folder}: no checkpoint.npz there; nothing to resume")
        try:
            done = checkpoint.read(folder / "checkpoint.npz")["epoch"]
        except ValueError as exc:
            sys.exit(f"--resume {folder}: {exc}")
        given = {k: v for k, v in settings_of(args).items() if v not in (None, False)}
        saved = runs.resumed_settings(folder, given, changeable=("epochs", "device"))
    except runs.RunFolderError as exc:
        sys.exit(str(exc))
    if args.epochs is not None and args.epochs <= done:
        sys.exit(f"--resume {folder}: the checkpoint holds {done} finished epochs; --epochs is the last "
                 f"epoch, not a count, so it must be above {done}, got {args.epochs}")
    if saved["epochs"] <= done:
        sys.exit(f"--resume {folder}: the run finished its {done} epochs; pass --epochs N (above {done}) "
                 "to train longer")
    vars(args).update(saved)
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.distributed:
        try:
            distributed.set_distribution(distributed.DataParallel())
        except ImportError as exc:
            sys.exit(f"--distributed: {exc}")
        if not distributed.distribution().is_writer:
            sys.stdout = open(os.devnull, "w")  # one rank reports; the others train
    folder = run_folder(args)
    started = time.perf_counter()
    tinyconv.set_seed(args.seed)
    tinyconv.set_device(args.device)
    print(f"Run folder: {folder}" + (" (resuming)" if args.resume else ""))

    images, labels, about = load_or_simulate(args)
    names = about["label_names"]
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = split(images, labels, random_state=42)
    print(f"Split: {len(x_train)} train, {len(x_valid)} valid, {len(x_test)} test")
    generator = make_generator()
    generator.fit(x_train)  # the statistics of the training images only ...
    x_valid_std, x_test_std = generator.standardize(x_valid), generator.standardize(x_test)  # ... used for all
    train_flow = generator.flow(x_train, y_train, batch_size=args.batch_size)

    model = build_model(x_train.shape[1:], y_train.shape[1])
    model.summary()
    warm_up(model, generator, x_train)

    ranks = distributed.distribution().num_ranks
    resume_command = (f"mpiexec -n {ranks} " if args.distributed else "") + \
        f"python {sys.argv[0] if sys.argv[0].endswith('.py') else 'examples/train_cells.py'} --resume {folder}" + \
        (" --distributed" if args.distributed else "")
    callbacks = [EarlyStopping(monitor="val_loss", patience=10),
                 CSVLogger(folder / "history.csv"),
                 ModelCheckpoint(folder / "best.weights.npz", monitor="val_loss", save_best_only=True),
                 TerminateOnNaN(),
                 TrainingCheckpoint(folder / "checkpoint.npz", resume_command=resume_command, restore=bool(args.resume))]
    history = model.fit(train_flow, epochs=args.epochs, validation_data=(x_valid_std, y_valid),
                        callbacks=callbacks, verbose=1)
    if history.interrupted:
        return 130
    if history.diverged:  # fit said where and why; the checkpoint holds the last finished epoch
        if distributed.distribution().is_writer:
            print(f"Training diverged; the last good state is in {folder}", file=sys.stderr)
        return 1
    if not distributed.distribution().is_writer:
        return 0  # rank 0 holds the same weights and reports alone
    distributed.set_distribution(None)
    model.save_weights(folder / "model.weights.npz")
    print(f"Wrote {model_file(model, generator, folder, about)} (predict on new images: "
          f"python examples/predict_cells.py {folder} --images DIR)")

    test_loss, test_accuracy = model.evaluate(x_test_std, y_test, batch_size=args.batch_size)
    p_test = model.predict(x_test_std, batch_size=args.batch_size)
    rows = metrics.per_label_report(y_test, p_test, names)
    baseline_auc = metrics.roc_auc(y_test, logistic_regression_baseline(x_train, y_train, x_test))
    write_report(rows, baseline_auc, folder, test_loss, test_accuracy)
    mean, aucs = rows[-1], np.array([r["auc"] for r in rows[:-1]])
    lowest = _value(aucs[np.isfinite(aucs)].min()) if np.isfinite(aucs).any() else "n/a"
    print(f"\nTest: loss {test_loss:.4f}, binary accuracy {test_accuracy:.4f}, mean AUC {_value(mean['auc'])} "
          f"(lowest {lowest}), mean F1 {_value(mean['f1'])}; baseline mean AUC "
          f"{_value(metrics.finite_mean(baseline_auc))}")
    for path in make_plots(model, x_test, x_test_std, y_test, p_test, names, about["channel_names"], rows,
                           baseline_auc, folder):
        print(f"Wrote {path}")
    print(f"Everything is in {folder} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
