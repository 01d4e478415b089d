"""Apply a trained run to new, unlabelled images: one probability per label for every image.

Usage::

    python examples/predict_cells.py runs/20240101-120000 --images new_cells
    python examples/predict_cells.py runs/20240101-120000 --images new_cells/a.tif --threshold 0.7

The run folder is one ``train_cells.py`` wrote: its ``model.keras`` (the trained network with the
training images' standardisation inside it), ``labels.txt`` (the label names), ``config.json``
(how the training images were read: their size, channels and intensity normalisation) and, when
they came from files, ``training_images.json`` (their pixel types: a new image of another bit depth
is refused, naming it). The new
images are read the same way (``tinyconv.data.load_images`` without a CSV: PNG, JPEG or TIFF, every
file below the folder in sorted order, or the one file given), and the script writes

- ``--out`` (default ``predictions.csv`` in the current folder, not among the images, which a later
  prediction would read): ``file``, one probability column per label, then
  one 0/1 call per label (``<label>_call``: probability above ``--threshold``);
- ``predictions_gallery.png`` beside it: for each label, the images it is most confident about;

and prints one summary line: how many images, and how many were called positive for each label.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from tinyconv.data import load_images
from tinyconv.diagnostics import plots
from tinyconv.models import load_model
from tinyconv.storage import atomic

GALLERY_SIZE = 8  # images per label in the gallery


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"predict_cells.py: {message} (see --help)\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder train_cells.py wrote (with model.keras)")
    parser.add_argument("--images", required=True, metavar="DIR", help="a folder of PNG/JPEG/TIFF images, or one image")
    parser.add_argument("--out", metavar="CSV", default="predictions.csv",
                        help="where to write the predictions (default predictions.csv)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability above which a label is called (0.5)")
    args = parser.parse_args(argv)
    if not 0 <= args.threshold <= 1:
        parser.error(f"--threshold must lie in [0, 1], got {args.threshold}")
    return args


def read_run(folder: Path):
    """The run's model, label names, reading settings and training pixel types (None when unknown),
    or an exit that says what is missing."""
    if not folder.is_dir():
        sys.exit(f"predict_cells.py: {folder}: no such run folder")
    missing = [name for name in ("model.keras", "labels.txt", "config.json") if not (folder / name).is_file()]
    if missing:
        sys.exit(f"predict_cells.py: {folder} has no {', '.join(missing)}: train_cells.py writes them when a run "
                 "finishes (an interrupted run has only its checkpoint: resume it with --resume to finish it)")
    try:
        settings = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        model = load_model(folder / "model.keras")
    except (ValueError, OSError) as exc:
        sys.exit(f"predict_cells.py: {exc}")
    names = (folder / "labels.txt").read_text(encoding="utf-8").split("\n")[:-1]
    if len(names) != model.output_shape[-1]:
        sys.exit(f"predict_cells.py: {folder / 'labels.txt'} names {len(names)} labels, the model has "
                 f"{model.output_shape[-1]} outputs")
    described = folder / "training_images.json"  # absent for a run on simulated cells
    trained_on = json.loads(described.read_text(encoding="utf-8"))["pixel_types"] if described.is_file() else None
    return model, names, settings, trained_on


def bit_depth(pixel_type: str) -> str:
    """``uint16`` -> ``16-bit``, ``int16`` -> ``16-bit signed``, ``float32`` -> ``32-bit float``."""
    dtype = np.dtype(pixel_type)
    return f"{8 * dtype.itemsize}-bit" + {"u": "", "i": " signed", "f": " float"}.get(dtype.kind, f" {dtype.kind}")


def read_images(path: Path, model, settings: dict, trained_on: list[str] | None):
    """The new images, read as the training images were; an image that does not fit the model (its
    channel count) or the training images (its bit depth, when they came from files) is refused."""
    height, width, channels = model.input_shape[1:]
    try:
        images, _, meta = load_images(path, image_size=(height, width), channels=settings.get("channels"),
                                      intensity_range=settings.get("intensity_range"),
                                      fit=settings.get("fit", "resize"))
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"predict_cells.py: {exc}")
    if images.shape[-1] != channels:
        first = meta["files"][0]
        sys.exit(f"predict_cells.py: {Path(meta['source']['folder']) / first} has {images.shape[-1]} channels, but "
                 f"the run's model takes {channels} (pass images like the training ones, or train on these)")
    # A pixel of another bit depth means another intensity scale (a fixed --intensity-range, 'dtype')
    # and another noise and saturation level even under per-image percentiles: not the images it learnt.
    for file, pixel_type in zip(meta["files"], meta["pixel_types"]):
        if trained_on is not None and pixel_type not in trained_on:
            sys.exit(f"predict_cells.py: {Path(meta['source']['folder']) / file} has {bit_depth(pixel_type)} pixels "
                     f"({pixel_type}), but the run was trained on "
                     f"{' and '.join(f'{bit_depth(t)} ({t})' for t in trained_on)} images: convert it as the "
                     "training images were acquired, or train on images like it")
    return images, meta["files"]


def write_predictions(path: Path, files, probabilities, names, threshold: float) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", *names, *(f"{name}_call" for name in names)])
    for file, row in zip(files, probabilities):
        writer.writerow([file, *(f"{p:.6f}" for p in row), *(int(p > threshold) for p in row)])
    content = text.getvalue().encode("utf-8")
    atomic.write_file(path, lambda f: f.write(content), "predictions")


def write_gallery(path: Path, images, probabilities, names) -> Path:
    """For each label, its most confident images (left to right, most confident first)."""
    rows = {}
    for k, name in enumerate(names):
        order = np.argsort(-probabilities[:, k], kind="stable")[:GALLERY_SIZE]
        rows[f"{name}: p {probabilities[order[0], k]:.2f} .. {probabilities[order[-1], k]:.2f}"] = images[order]
    return plots.plot_image_rows(rows, path, ncols=GALLERY_SIZE, title="most confident images per label")


def main(argv=None) -> int:
    args = parse_args(argv)
    model, names, settings, trained_on = read_run(Path(args.run))
    images, files = read_images(Path(args.images), model, settings, trained_on)
    probabilities = model.predict(images, batch_size=256)
    out = Path(args.out)
    write_predictions(out, files, probabilities, names, args.threshold)
    gallery = write_gallery(out.with_name(out.stem + "_gallery.png"), images, probabilities, names)
    called = (probabilities > args.threshold).sum(axis=0)
    counts = ", ".join(f"{name} {n}" for name, n in zip(names, called) if n) or "none"
    print(f"Predicted {len(files)} images; called positive (p > {args.threshold}): {counts}. "
          f"Wrote {out} and {gallery}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
