"""A folder of your own images and a labels CSV, read into the same ``Dataset`` as ``load_dataset``.

The CSV holds one row per image: a header, then the file name (relative to the folder, ``/`` for
sub-folders) and one 0/1 column per label::

    file,mitotic,binucleated
    a.tif,0,1
    plate2/b.png,1,0

Reading, for every image in the CSV's order:

1. **Decode.** PNG and JPEG with Pillow (8- or 16-bit; grey, RGB; an alpha channel is dropped, a
   palette is expanded to RGB); TIFF with tifffile (8-, 16-, 32-bit or float; grey, RGB or any number
   of channels). The result is (H, W, C).
2. **Find the channel axis of a TIFF.** When the file names its axes (RGB samples ``S``, or a
   channel axis ``C`` as OME-TIFF and ImageJ write it), that axis holds the channels. Otherwise a
   3-D array has its channels on the first or the last axis, whichever is shorter, if it is at most
   ``MAX_CHANNELS`` long: (H, W, C) channels-last and (C, H, W) channels-first both read as (H, W, C).
   Anything else (an axis the file names Z or T, a 60-plane stack) is an error: choose a plane and
   save it alone, or pass ``channel_axis``.
3. **Select channels.** ``channels=None`` keeps them all (every image must have as many);
   ``channels=3`` requires three; ``channels=[3, 0]`` keeps channels 3 and 0, in that order.
4. **Normalise each channel of each image** to [0, 1]. By default by percentiles, the microscopy
   convention: the 1st percentile maps to 0, the 99.8th to 1, values outside are clipped. That makes
   dim and bright images look alike: absolute brightness is no longer in the pixels. For
   quantitative work pass a fixed ``intensity_range=(low, high)`` shared by all images, or
   ``intensity_range="dtype"`` for the full range of the file's type (0-255, 0-65535).
   A constant channel (high == low) becomes 0.
5. **Bring to ``image_size``** (an int or (height, width); None keeps the files' size, which must
   then agree). ``fit="resize"`` (default) takes the largest centred region of the target's aspect
   ratio and resamples it with Pillow's bilinear filter, which averages over the source pixels
   when shrinking (no aliasing), so nothing is stretched; ``fit="crop"`` cuts the central
   ``image_size`` pixels without resampling (the pixel size stays the microscope's; an image
   smaller than ``image_size`` is an error).

Which files it reads: only files inside ``folder``. A CSV row names a file relative to it, with
``/`` between sub-folders; an absolute path or a ``..`` step is refused, and so are two rows that
name one file (``a.png`` and ``./a.png``, or two links to it). The CSV must be UTF-8 text (with or
without the BOM spreadsheets write). An image whose header declares more than ``MAX_PIXELS`` pixels
(64 Mi, e.g. 8192 x 8192) per plane is refused before it is decoded: cut large scans into tiles first.

Errors are ``ValueError`` (``FileNotFoundError`` for a missing folder or CSV) naming the CSV row or
the file: rows without an image, images in the folder without a row, unreadable or unsupported
files, labels other than 0/1, duplicate names, header problems, an empty CSV, mixed channel counts.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple, Sequence

import numpy as np

from .. import arguments
from .io import Dataset, save_dataset

MAX_CHANNELS = 16  # the longest axis read as channels when a TIFF does not name its axes
MAX_PIXELS = 2 ** 26  # per plane: larger declared sizes are refused before decoding (a damaged header or a whole scan)
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES


def load_images(folder, labels_csv=None, image_size: int | tuple[int, int] | None = 32,
                channels: int | Sequence[int] | None = None, *,
                percentiles: tuple[float, float] | None = None,
                intensity_range: tuple[float, float] | str | None = None,
                fit: str = "resize", channel_axis: int | None = None,
                ignore_unlisted: bool = False, save_to=None, overwrite: bool = False) -> Dataset:
    """Read the images a labels CSV lists, normalised and sized for training; without a CSV, every
    image below ``folder`` (or the one file ``folder`` names), to predict on.

    Parameters
    ----------
    folder : the folder the CSV's file names are relative to (without a CSV: a folder or one image file)
    labels_csv : the CSV (header ``file,<label>,...``; a relative path is taken from the
        current directory, then from ``folder``); None: no labels
    image_size : output height and width (int or pair); None keeps the files' size
    channels : None (all), a count the images must have, or the indices of the channels to keep
    percentiles : (low, high) per-image percentiles mapped to 0 and 1; default (1, 99.8)
    intensity_range : (low, high) fixed for every image, or "dtype"; instead of percentiles
    fit : "resize" (centred region of the right aspect, bilinear) or "crop" (central pixels)
    channel_axis : the channel axis of TIFF arrays, when the automatic rule (see the module) fails
    ignore_unlisted : allow images in the folder that the CSV does not name
    save_to : also write the data set folder there (``save_dataset``, float32)
    overwrite : passed to ``save_dataset``

    Returns
    -------
    Dataset(images float32 (N, H, W, C) in [0, 1], labels uint8 (N, L), meta) in the CSV's row
    order; meta holds ``label_names`` (the CSV header), ``files``, ``pixel_types`` (each file's
    pixel type as read, e.g. ``"uint16"``: its bit depth), ``source`` and the settings.
    Without a CSV: labels None, ``label_names`` None, and the files in sorted order (``/`` between
    sub-folders; hidden files left out).
    """
    folder = Path(folder)
    single = labels_csv is None and folder.is_file()
    if single:
        folder, only = folder.parent, folder.name
    elif not folder.is_dir():
        raise FileNotFoundError(f"load_images: {folder}: no such folder" + ("" if labels_csv is not None
                                                                          else " or image file"))
    csv_path = None if labels_csv is None else _find_csv(folder, labels_csv)
    size = _check_size(image_size)
    normalize = _normalizer(percentiles, intensity_range)
    if fit not in ("resize", "crop"):
        raise ValueError(f"load_images: fit must be 'resize' or 'crop', got {fit!r}")
    channels = _check_channels(channels)
    if channel_axis is not None and channel_axis not in (-3, -2, -1, 0, 1, 2):
        raise ValueError(f"load_images: channel_axis must be one of -3..2 (an axis of a 3-D TIFF), got {channel_axis!r}")
    if save_to is not None and Path(save_to).exists() and not overwrite:
        raise FileExistsError(f"load_images: save_to={save_to} exists; pass overwrite=True to replace it")

    if csv_path is None:
        if save_to is not None:
            raise ValueError("load_images: save_to needs labels (a data set folder holds them); pass labels_csv")
        names, labels = None, None
        files = [only] if single else image_files(folder)
        if not files:
            raise ValueError(f"load_images: {folder} holds no images ({', '.join(SUFFIXES)})")
    else:
        names, files, labels, row_numbers = read_labels_csv(csv_path)
        _check_files_match(folder, csv_path, files, row_numbers, ignore_unlisted)

    images, pixel_types, channel_count = [], [], None
    for file in files:
        path = folder / file
        image = read_image(path, channel_axis=channel_axis)
        pixel_types.append(image.dtype.name)
        image = _select_channels(image, channels, path)
        if channel_count is None:
            channel_count, first = image.shape[2], path
        elif image.shape[2] != channel_count:
            raise ValueError(f"load_images: mixed channel counts: {path} has {image.shape[2]} channels, "
                             f"{first} has {channel_count}; pass channels=[...] to pick the same ones")
        image = normalize(image, path)
        images.append(_fit(image, size, fit, path))
    odd = [i for i, image in enumerate(images) if image.shape != images[0].shape]
    if odd:  # only with image_size=None
        raise ValueError(f"load_images: image_size=None needs images of one size, but {folder / files[0]} is "
                         f"{images[0].shape[:2]} and {folder / files[odd[0]]} is {images[odd[0]].shape[:2]}")
    meta = {"label_names": names, "files": files, "pixel_types": pixel_types,
            "source": {"folder": str(folder), "labels_csv": None if csv_path is None else str(csv_path)},
            "normalization": normalize.description, "fit": fit,
            "channels": list(channels) if isinstance(channels, tuple) else channels}
    dataset = Dataset(np.stack(images).astype(np.float32), labels, meta)
    if save_to is not None:
        save_dataset(save_to, *dataset, overwrite=overwrite)
    return dataset


# --- the CSV ---------------------------------------------------------------------------------------

class LabelTable(NamedTuple):
    """What ``read_labels_csv`` returns."""

    label_names: list[str]  # the header after the file column
    files: list[str]  # one per row, as written
    labels: np.ndarray  # uint8 (N, L)
    row_numbers: list[int]  # each row's line in the CSV (the header is row 1)


def read_labels_csv(path) -> LabelTable:
    """Read and check a labels CSV; errors name the row."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            rows = [(number, [cell.strip() for cell in row]) for number, row in enumerate(csv.reader(f), start=1)
                    if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: the CSV is not UTF-8 text (byte {exc.object[exc.start]:#04x} at position "
                         f"{exc.start}); save it as UTF-8 (in a spreadsheet: 'CSV UTF-8')") from exc
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from exc
    if not rows:
        raise ValueError(f"{path}: the CSV is empty; expected a header (file,<label>,...) and one row per image")
    _, header = rows[0]
    if len(header) < 2:
        raise ValueError(f"{path} row 1: the header needs the file column and at least one label column, "
                         f"got {header}")
    if all(cell in ("0", "1") for cell in header[1:]):
        raise ValueError(f"{path} row 1: the first row must be a header (file,<label>,...), got {header}")
    if "" in header[1:]:
        raise ValueError(f"{path} row 1: label column {header.index('', 1) + 1} has no name")
    seen = set()
    for name in header[1:]:
        if name in seen:
            raise ValueError(f"{path} row 1: label name {name!r} appears twice")
        seen.add(name)
    if len(rows) == 1:
        raise ValueError(f"{path}: the CSV has a header but no rows; expected one row per image")
    files, labels, numbers, first_row = [], [], [], {}
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"{path} row {number}: expected {len(header)} cells like the header, got {len(row)}: {row}")
        file, values = row[0], row[1:]
        if not file:
            raise ValueError(f"{path} row {number}: the file name is empty")
        if PurePosixPath(file).is_absolute() or PureWindowsPath(file).anchor:
            raise ValueError(f"{path} row {number}: {file} is an absolute path; file names are relative to "
                             "the images folder")
        if ".." in PurePosixPath(file.replace("\\", "/")).parts:
            raise ValueError(f"{path} row {number}: {file} steps out with '..'; file names are relative to the "
                             "images folder and stay inside it")
        key = os.path.normpath(file).replace("\\", "/")  # a.png, ./a.png and .//a.png are one file
        if key in first_row:
            raise ValueError(f"{path} row {number}: {file} is listed twice (also row {first_row[key]})")
        first_row[key] = number
        for name, value in zip(header[1:], values):
            if value not in ("0", "1"):
                raise ValueError(f"{path} row {number} ({file}): label {name!r} must be 0 or 1, got {value!r}")
        files.append(file)
        numbers.append(number)
        labels.append([int(v) for v in values])
    return LabelTable(header[1:], files, np.array(labels, dtype=np.uint8), numbers)


def _find_csv(folder: Path, labels_csv) -> Path:
    path = Path(labels_csv)
    for candidate in (path, folder / path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"load_images: labels CSV {labels_csv} not found (looked in the current folder and {folder})")


def _check_files_match(folder: Path, csv_path: Path, files: list[str], row_numbers: list[int],
                       ignore_unlisted: bool) -> None:
    """Every row has its image, and (unless ignored) every image in the folder has its row."""
    missing = [f"row {number} ({file})" for number, file in zip(row_numbers, files) if not (folder / file).is_file()]
    if missing:
        raise ValueError(f"{csv_path}: {len(missing)} rows name no file in {folder}: {', '.join(missing[:10])}"
                         + (" ..." if len(missing) > 10 else ""))
    first_row = {}
    for number, file in zip(row_numbers, files):  # two spellings or two links of one file
        target = (folder / file).resolve()
        if target in first_row:
            raise ValueError(f"{csv_path} row {number}: {file} is the same file as row {first_row[target][0]} "
                             f"({first_row[target][1]}); list each image once")
        first_row[target] = number, file
    if ignore_unlisted:
        return
    listed = set(first_row)
    unlisted = [file for file in image_files(folder) if (folder / file).resolve() not in listed]
    if unlisted:
        raise ValueError(f"{csv_path}: {len(unlisted)} images in {folder} have no row: {', '.join(unlisted[:10])}"
                         + (" ..." if len(unlisted) > 10 else "") + "; add rows or pass ignore_unlisted=True")


def image_files(folder: Path) -> list[str]:
    """The image files below ``folder`` (hidden ones left out), relative with ``/``, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith("."))


# --- one image -------------------------------------------------------------------------------------

def read_image(path, channel_axis: int | None = None) -> np.ndarray:
    """One PNG, JPEG or TIFF file as an (H, W, C) array of its own dtype."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(path, channel_axis)
    if suffix in PIL_SUFFIXES:
        return _read_pillow(path)
    raise ValueError(f"{path}: unsupported image format {path.suffix!r}; expected PNG, JPEG or TIFF "
                     f"({', '.join(SUFFIXES)})")


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            _check_declared_size(image.size[0] * image.size[1], f"{image.size[0]} x {image.size[1]}", path)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: cannot read the image: {exc}") from exc
    except MemoryError:
        raise ValueError(f"{path}: not enough memory to decode it ({image.size[0]} x {image.size[1]} pixels)") from None
    if image.mode in ("P", "PA"):  # palette indices -> the colours they stand for
        image = image.convert("RGB")
    if image.mode in ("LA", "La"):
        image = image.getchannel(0)  # grey, without its alpha
    elif image.mode not in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, ...
    array = np.asarray(image)
    if image.mode == "RGBA":
        array = array[..., :3]  # alpha is not a stain
    return array[:, :, None] if array.ndim == 2 else array


def _read_tiff(path: Path, channel_axis: int | None) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            plane = [n for n, axis in zip(series.shape, series.axes) if axis in "YX"] or series.shape
            _check_declared_size(int(np.prod(plane)), " x ".join(map(str, plane)), path)
            array, axes = series.asarray(), series.axes
    except MemoryError:
        raise ValueError(f"{path}: not enough memory to decode it (shape {series.shape}, {series.dtype})") from None
    except ValueError as exc:
        if str(exc).startswith(str(path)):  # ours
            raise
        raise ValueError(f"{path}: cannot read the TIFF: {exc}") from exc
    except Exception as exc:  # tifffile raises several types for damaged files
        raise ValueError(f"{path}: cannot read the TIFF: {exc}") from exc
    keep = [i for i, n in enumerate(array.shape) if n != 1 or axes[i] in "YX"]
    array, axes = array.reshape([array.shape[i] for i in keep]), "".join(axes[i] for i in keep)
    if array.dtype.kind not in "uif":
        raise ValueError(f"{path}: unsupported TIFF pixel type {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{path}: NaN or inf pixels")
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"{path}: a {array.ndim}-D TIFF (axes {axes}, shape {array.shape}); expected a 2-D image "
                         "with or without channels: save one plane per file")
    if channel_axis is None:
        channel_axis = _tiff_channel_axis(array.shape, axes, path)
    return np.ascontiguousarray(np.moveaxis(array, channel_axis, -1))


def _check_declared_size(pixels: int, size: str, path: Path) -> None:
    """Refuse a plane larger than ``MAX_PIXELS`` from its header alone, before memory is spent on it."""
    if pixels > MAX_PIXELS:
        raise ValueError(f"{path}: its header declares {size} pixels per plane, more than "
                         f"load_images reads ({MAX_PIXELS} pixels, e.g. 8192 x 8192): a damaged file, or a whole "
                         "scan; cut it into tiles first")


def _tiff_channel_axis(shape: tuple, axes: str, path: Path) -> int:
    """The axis of a 3-D TIFF that holds the channels (see the module's rule)."""
    named = [i for i, axis in enumerate(axes) if axis in "CS"]
    if len(named) == 1:
        return named[0]
    stacked = [axis for axis in axes if axis in "ZT"]
    if stacked:
        raise ValueError(f"{path}: a {'z-stack' if 'Z' in stacked else 'time series'} (axes {axes}, shape {shape}); "
                         "expected a 2-D image with or without channels: save one plane per file")
    first, last = shape[0], shape[-1]
    if last <= MAX_CHANNELS and last < first:
        return 2
    if first <= MAX_CHANNELS and first < last:
        return 0
    raise ValueError(f"{path}: cannot tell which axis of shape {shape} (axes {axes}) holds the channels; "
                     f"expected (H, W, C) or (C, H, W) with at most {MAX_CHANNELS} channels on the shortest axis. "
                     "A z-stack or time series: save one plane per file; otherwise pass channel_axis")


def _check_channels(channels):
    if channels is None:
        return None
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        if channels < 1:
            raise ValueError(f"load_images: channels must be at least 1, got {channels}")
        return int(channels)
    try:
        if isinstance(channels, str):
            raise TypeError
        picked = tuple(int(c) for c in channels)
    except (TypeError, ValueError):
        raise TypeError(f"load_images: channels must be None, a count or a list of channel indices, "
                        f"got {channels!r}") from None
    if not picked or min(picked) < 0:
        raise ValueError(f"load_images: channels must list channel indices >= 0, got {channels!r}")
    return picked


def _select_channels(image: np.ndarray, channels, path: Path) -> np.ndarray:
    if channels is None:
        return image
    if isinstance(channels, int):
        if image.shape[2] != channels:
            raise ValueError(f"{path}: has {image.shape[2]} channels, expected channels={channels}")
        return image
    if max(channels) >= image.shape[2]:
        raise ValueError(f"{path}: has {image.shape[2]} channels, so channels={list(channels)} is out of range")
    return image[:, :, list(channels)]


def _normalizer(percentiles, intensity_range):
    """A function (image, path) -> float32 image in [0, 1], channel by channel."""
    if percentiles is not None and intensity_range is not None:
        raise ValueError("load_images: give percentiles or intensity_range, not both")
    if intensity_range is None:
        low, high = (1.0, 99.8) if percentiles is None else _pair(percentiles, "percentiles")
        if not 0 <= low < high <= 100:
            raise ValueError(f"load_images: percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")

        def normalize(image, path):
            flat = image.reshape(-1, image.shape[2]).astype(np.float64)
            return _scale(image, *np.percentile(flat, [low, high], axis=0))
        normalize.description = {"percentiles": [low, high]}
    elif isinstance(intensity_range, str):
        if intensity_range != "dtype":
            raise ValueError(f"load_images: intensity_range must be (low, high) or 'dtype', got {intensity_range!r}")

        def normalize(image, path):
            if image.dtype.kind not in "ui":
                raise ValueError(f"{path}: intensity_range='dtype' needs integer pixels, got {image.dtype}; "
                                 "pass intensity_range=(low, high)")
            info = np.iinfo(image.dtype)
            return _scale(image, info.min, info.max)
        normalize.description = {"intensity_range": "dtype"}
    else:
        low, high = _pair(intensity_range, "intensity_range")
        if not low < high:
            raise ValueError(f"load_images: intensity_range must have low < high, got {intensity_range}")

        def normalize(image, path):
            return _scale(image, low, high)
        normalize.description = {"intensity_range": [low, high]}
    return normalize


def _pair(value, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"load_images: {name} must be a pair of numbers, got {value!r}") from None
    return low, high


def _scale(image: np.ndarray, low, high) -> np.ndarray:
    """(image - low) / (high - low), clipped to [0, 1]; a channel with high == low becomes 0."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    span = np.where(high > low, high - low, np.inf)
    return np.clip((image - low) / span, 0.0, 1.0).astype(np.float32)


def _check_size(image_size):
    if image_size is None:
        return None
    return arguments.pair(image_size, "image_size", "load_images")


def _fit(image: np.ndarray, size, fit: str, path: Path) -> np.ndarray:
    """(H, W, C) float32 -> (size[0], size[1], C) by a centred crop, resampled unless fit='crop'."""
    if size is None:
        return image
    height, width = image.shape[:2]
    if fit == "crop":
        if height < size[0] or width < size[1]:
            raise ValueError(f"{path}: is {height}x{width} pixels, smaller than image_size {size[0]}x{size[1]} "
                             "that fit='crop' cuts; use fit='resize'")
        return centre_crop(image, size)
    # The largest centred region with the target's aspect ratio, so that resizing stretches nothing.
    scale = min(height / size[0], width / size[1])
    region = centre_crop(image, (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
    return resize(region, size)


def centre_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The central size[0] x size[1] pixels (odd leftovers go to the bottom and right)."""
    top, left = (image.shape[0] - size[0]) // 2, (image.shape[1] - size[1]) // 2
    return image[top:top + size[0], left:left + size[1]]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float32 -> (size[0], size[1], C), each channel by Pillow's bilinear filter.

    Pillow widens the filter by the shrink factor, so downsampling averages every source pixel
    (no aliasing); the weights are non-negative, so values stay in the input's range.
    """
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32))
                         .resize((size[1], size[0]), Image.Resampling.BILINEAR)) for c in range(image.shape[2])]
    return np.stack(planes, axis=-1)
