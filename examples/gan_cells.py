"""Generate cells: a DCGAN trained by explicit backprop on simulated 32x32 cells, and scored.

The whole flow, in order:

1. simulate cells with their 18 labels (cached under ``data/``, as train_cells.py does) and scale
   them to [-1, 1], the range of the generator's tanh;
2. train a small CNN on the labels (cached under ``data/`` too): its last hidden layer is the
   feature space of the Fréchet distance, and its predictions say which labels generated cells show;
3. train the DCGAN (see docs/gan.md) with ``fit``: each batch one discriminator step and one
   generator step (``GAN.train_step``), ``Adam(2e-4, beta_1=0.5)`` for both; after every epoch a
   grid of cells generated from the same fixed noise, the Fréchet distance between held-out real
   cells and generated ones (a callback that adds it to the epoch's logs), the CSV log, a checkpoint;
4. at the end: the curves, real cells beside generated ones, and the label prevalence of the
   generated cells against the real prevalence, under ``runs/<timestamp>/``.

Usage::

    python examples/gan_cells.py                     # the default run (about 4 minutes on 2 quiet cores)
    python examples/gan_cells.py --quick             # a smoke test: tiny data, 2 short epochs
    python examples/gan_cells.py --resume runs/20240101-120000 --epochs 30   # continue, or go longer

Ctrl-C (or SIGTERM) stops after the running batch and saves the state at the start of that epoch,
which ``--resume`` continues bit for bit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import tinyconv
from tinyconv import Model
from tinyconv.training import checkpoint, runs
from tinyconv.diagnostics import plots
from tinyconv.callbacks import Callback, CSVLogger, TrainingCheckpoint, read_csv_log
from tinyconv.data import cells, split
from tinyconv.diagnostics.frechet import frechet_distance
from tinyconv.training.gan import GAN
from tinyconv.layers import (BatchNormalization, Conv2D, Conv2DTranspose, Dense, Dropout, Flatten, Input,
                             LeakyReLU, Reshape)
from tinyconv.zoo import seed_cnn

DEFAULTS = {"epochs": 20, "n_samples": 8000, "batch_size": 64, "latent_dim": 64, "classifier_epochs": 3,
            "n_eval": 1000, "device": "cpu", "seed": 0}
QUICK = {"epochs": 2, "n_samples": 400, "classifier_epochs": 1, "n_eval": 100}
IMAGE_SIZE, CHANNELS = 32, 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, help=f"last epoch (default {DEFAULTS['epochs']})")
    parser.add_argument("--batch-size", type=int, help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--n-samples", type=int, help=f"cells to simulate (default {DEFAULTS['n_samples']})")
    parser.add_argument("--latent-dim", type=int, help=f"length of the noise vector (default {DEFAULTS['latent_dim']})")
    parser.add_argument("--classifier-epochs", type=int,
                        help=f"epochs of the feature CNN (default {DEFAULTS['classifier_epochs']})")
    parser.add_argument("--n-eval", type=int, help="real and generated cells compared by the Fréchet "
                                                   f"distance (default {DEFAULTS['n_eval']})")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default cpu")
    parser.add_argument("--out", default="runs", help="the folder that receives runs/<timestamp>/ (default runs)")
    parser.add_argument("--seed", type=int, help="seeds the simulation, the weights, the noise "
                                                             "and the shuffling (default 0)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs, for smoke tests")
    args = parser.parse_args(argv)
    for key in ("epochs", "batch_size", "n_samples", "latent_dim", "classifier_epochs", "n_eval"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    return args


# --- 1-2: data and the feature CNN ------------------------------------------------------------------

def load_cells(args) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Simulated images scaled to [-1, 1] (float32), labels (N, 18) and the label names."""
    folder = Path(f"data/cells-v{cells.VERSION}-n{args.n_samples}-{IMAGE_SIZE}px-seed{args.seed}")
    images, labels, meta = cells.load_or_make(folder, n=args.n_samples, image_size=IMAGE_SIZE, channels=CHANNELS,
                                              seed=args.seed, verbose=True)
    images = np.asarray(images, dtype=np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    return images * 2 - 1, labels.astype(np.float32), list(meta["label_names"])


def feature_cnn(args, x_train, y_train, x_valid, y_valid) -> Model:
    """The seed CNN trained on the labels of [-1, 1] images; cached, since every run of the same data
    would train the same one."""
    model = seed_cnn(x_train.shape[1:], y_train.shape[1])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    cache = Path(f"data/feature-cnn-v{cells.VERSION}-n{args.n_samples}-seed{args.seed}-"
                 f"e{args.classifier_epochs}.weights.npz")
    if cache.is_file():
        model.load_weights(cache)
        return model
    print(f"Training the feature CNN on the labels ({args.classifier_epochs} epochs) ...")
    model.fit(x_train, y_train, batch_size=32, epochs=args.classifier_epochs, verbose=0)
    loss, accuracy = model.evaluate(x_valid, y_valid)
    print(f"  validation loss {loss:.3f}, binary accuracy {accuracy:.3f}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(cache)
    return model


def hidden_features(model: Model, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """The activations that enter the CNN's final Dropout and Dense: its last hidden layer (inference)."""
    stop = max(i for i, layer in enumerate(model.layers) if isinstance(layer, Dropout))
    batches = []
    for start in range(0, len(images), batch_size):
        h = model.prepare_input(images[start:start + batch_size])
        for layer in model.layers[:stop]:
            h = layer.forward(h)
        batches.append(tinyconv.to_numpy(h))
    return np.concatenate(batches)


# --- 3: the DCGAN -------------------------------------------------------------------------------------

def build_generator(latent_dim: int) -> Model:
    """noise -> 4x4x128 -> 8x8x64 -> 16x16x32 -> 32x32x3, BatchNorm and LeakyReLU between, tanh out."""
    z = Input(shape=(latent_dim,))
    x = Dense(4 * 4 * 128, use_bias=False)(z)
    x = BatchNormalization()(x)
    x = LeakyReLU(0.2)(x)
    x = Reshape((4, 4, 128))(x)
    for filters in (64, 32):
        x = Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False)(x)
        x = BatchNormalization()(x)
        x = LeakyReLU(0.2)(x)
    images = Conv2DTranspose(CHANNELS, 4, strides=2, padding="same", activation="tanh")(x)
    return Model(z, images, name="generator")


def build_discriminator() -> Model:
    """32x32x3 -> 16x16x32 -> 8x8x64 -> 4x4x128 -> one logit; no BatchNorm on the first layer (DCGAN)."""
    images = Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS))
    x = LeakyReLU(0.2)(Conv2D(32, 4, strides=2, padding="same")(images))
    for filters in (64, 128):
        x = Conv2D(filters, 4, strides=2, padding="same", use_bias=False)(x)
        x = BatchNormalization()(x)
        x = LeakyReLU(0.2)(x)
    logit = Dense(1)(Flatten()(x))
    return Model(images, logit, name="discriminator")


def evaluate(gan: GAN, classifier: Model, real_features, real_prevalence, noise) -> dict[str, float]:
    """Fréchet distance to the real cells and the mean gap in label prevalence, for cells from ``noise``."""
    generated = gan.generate(noise)
    prevalence = (classifier.predict(generated, batch_size=250) > 0.5).mean(axis=0)
    return {"frechet": frechet_distance(real_features, hidden_features(classifier, generated)),
            "prevalence_gap": float(np.abs(prevalence - real_prevalence).mean()), "prevalence": prevalence}


class Scores(Callback):
    """After every epoch: the Fréchet distance and the label-prevalence gap of cells generated from
    ``eval_noise`` (added to the epoch's logs, so History, the CSV log and the progress line have
    them), and a grid of cells from ``fixed_noise``. Both noises come from the seed, so a resumed
    run draws the same ones."""

    def __init__(self, classifier, real_features, real_prevalence, eval_noise, fixed_noise, folder: Path):
        super().__init__()
        self.classifier, self.real_features, self.real_prevalence = classifier, real_features, real_prevalence
        self.eval_noise, self.fixed_noise, self.folder = eval_noise, fixed_noise, folder

    def on_epoch_end(self, epoch, logs=None):
        quality = evaluate(self.model, self.classifier, self.real_features, self.real_prevalence, self.eval_noise)
        logs.update(frechet=quality["frechet"], prevalence_gap=quality["prevalence_gap"])
        grid = (self.model.generate(self.fixed_noise) + 1) / 2
        plots.plot_image_rows({f"epoch {epoch + 1}": grid[:8], "": grid[8:16], " ": grid[16:24]},
                              self.folder / "grids" / f"epoch-{epoch + 1:03d}.png")


# --- the run ----------------------------------------------------------------------------------------

def run_folder(args) -> Path:
    """A new ``<out>/<timestamp>/`` holding config.json, or the ``--resume`` folder with its settings
    (a different value for any of them but ``--epochs`` and ``--device`` is refused)."""
    try:
        if not args.resume:
            for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
                if getattr(args, key) is None:
                    setattr(args, key, value)
            return runs.create(args.out, {k: v for k, v in vars(args).items() if k not in ("resume", "out")})
        folder = Path(args.resume)
        if not (folder / "checkpoint.npz").is_file():
            sys.exit(f"--resume {folder}: no checkpoint.npz there; nothing to resume")
        given = {k: v for k, v in vars(args).items() if k not in ("resume", "out") and v not in (None, False)}
        saved = runs.resumed_settings(folder, given, changeable=("epochs", "device"))
        finished = checkpoint.read(folder / "checkpoint.npz")["epoch"]
    except runs.RunFolderError as exc:
        sys.exit(str(exc))
    except ValueError as exc:  # a damaged checkpoint
        sys.exit(f"--resume {folder}: {exc}")
    if saved["epochs"] <= finished:
        sys.exit(f"--resume {folder}: the checkpoint has finished {finished} epochs; pass --epochs "
                 f"above {finished} to train longer")
    vars(args).update(saved, resume=str(folder))
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = run_folder(args)
    started = time.perf_counter()
    tinyconv.set_seed(args.seed)
    tinyconv.set_device(args.device)
    print(f"Run folder: {folder}" + (" (resuming)" if args.resume else ""))

    images, labels, names = load_cells(args)
    (x_train, y_train), (x_valid, y_valid), (x_eval, y_eval) = split(images, labels, random_state=42)
    if len(x_train) < args.batch_size:  # every epoch would run no step at all
        sys.exit(f"--batch-size {args.batch_size} is larger than the {len(x_train)} training cells "
                 f"(80% of --n-samples {args.n_samples}); lower it or simulate more cells")
    classifier = feature_cnn(args, x_train, y_train, x_valid, y_valid)
    eval_real = np.resize(x_eval, (args.n_eval, *x_eval.shape[1:]))  # repeats when the split is smaller
    real_features = hidden_features(classifier, eval_real)
    real_prevalence = (classifier.predict(eval_real, batch_size=250) > 0.5).mean(axis=0)

    tinyconv.set_seed(args.seed)  # the GAN's weights and noise do not depend on the classifier's training
    gan = GAN(build_generator(args.latent_dim), build_discriminator())
    gan.generator.summary()
    gan.discriminator.summary()
    fixed_noise = gan.sample_noise(32)
    eval_noise = gan.sample_noise(args.n_eval)
    if not args.resume:
        plots.plot_image_rows({"real": (x_train[:8] + 1) / 2}, folder / "grids" / "real.png")
    print(f"{len(x_train)} training cells, batch {args.batch_size}; Fréchet distance on {args.n_eval} cells")
    callbacks = [Scores(classifier, real_features, real_prevalence, eval_noise, fixed_noise, folder),
                 CSVLogger(folder / "history.csv"),
                 TrainingCheckpoint(folder / "checkpoint.npz", restore=bool(args.resume),
                                    resume_command=f"python examples/gan_cells.py --resume {folder}")]
    history = gan.fit(x_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=callbacks, verbose=2)
    if history.interrupted:
        return 130
    if history.diverged:
        print(f"Training diverged; the last good state is in {folder}", file=sys.stderr)
        return 1
    history = read_csv_log(folder / "history.csv")  # every epoch, the resumed ones included

    quality = evaluate(gan, classifier, real_features, real_prevalence, eval_noise)
    report = {"epochs": args.epochs, "frechet_per_epoch": history["frechet"],
              "label_prevalence": {name: {"real": float(r), "generated": float(g)}
                                   for name, r, g in zip(names, real_prevalence, quality["prevalence"])}}
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    generated = (gan.generate(fixed_noise) + 1) / 2
    paths = [plots.plot_gan_history(history, folder / "plots" / "gan_history.png"),
             plots.plot_image_rows({"real cells": (eval_real[:10] + 1) / 2, "generated": generated[:10],
                                    "generated ": generated[10:20]},
                                   folder / "plots" / "real_vs_generated.png", ncols=10),
             plots.plot_label_prevalence(real_prevalence, quality["prevalence"], names,
                                         folder / "plots" / "label_prevalence.png")]
    for path in paths:
        print(f"Wrote {path}")
    print(f"Fréchet distance: {history['frechet'][0]:.2f} after epoch 1, {history['frechet'][-1]:.2f} after "
          f"epoch {args.epochs}. Everything is in {folder} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
