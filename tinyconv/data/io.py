"""Data sets on disk, and the train/valid/test split.

A data set is a folder whose current version has three files, so that a user's own images work the
same way as simulated ones:

- ``images.npy``: (N, H, W, C), uint8 (0-255) or float32;
- ``labels.npy``: (N, L), values in {0, 1} (any integer, bool or float dtype);
- ``meta.json``: at least ``{"label_names": [... L names ...]}``; the simulator also records its
  version, parameters, seed and the creation time.

Several processes may share a data set folder (two runs started together on one cache, a run
reading while another replaces the set), so ``save_dataset`` never changes a file a reader may
have opened. It writes each version into a folder of its own and then points at it:

    <path>/current          one line, the name of the current version's folder; replaced atomically
    <path>/v-<id>/          images.npy, labels.npy, meta.json: written once, never changed
    <path>/.lock            writers take it in turn (an operating-system lock, freed if they die)

A reader opens the three files of the version ``current`` names, so it sees one version whole,
however the writers interleave: a version replaced while it reads stays readable through the files
it holds open (on POSIX; Windows keeps the old folder until a later save can remove it). A folder
that holds the three files directly, as one made by hand, is read as it is. ``load_dataset`` checks
everything it reads (shapes, dtypes, pixels in [0, 1], labels in {0, 1}) and names the file at fault.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..storage import atomic

FILES = ("images.npy", "labels.npy", "meta.json")
POINTER = "current"
_VERSION = re.compile(r"v-\d+-\d+-[0-9a-f]{8}")
_MMAP_BYTES = 256 * 2 ** 20  # memory-map image files larger than this
_READ_ATTEMPTS = 50  # a reader retries while writers keep replacing the version it was about to open


class Dataset(NamedTuple):
    """What ``load_dataset`` returns: ``images, labels, meta = load_dataset(path)`` also works."""

    images: np.ndarray  # (N, H, W, C) uint8 or float32, possibly a read-only memory map
    labels: np.ndarray  # (N, L)
    meta: dict


def save_dataset(path, images: np.ndarray, labels: np.ndarray, meta: dict, dtype: str = "float32",
                 overwrite: bool = False) -> Path:
    """Write a data set folder atomically; returns its path.

    Parameters
    ----------
    images : (N, H, W, C) array; float images are expected in [0, 1]
    labels : (N, L) array in {0, 1}; stored as uint8
    meta : dict, JSON-serialisable; ``label_names`` is filled in (label_0, ...) when missing
    dtype : "float32" or "uint8" (stores ``round(255 * x)`` for float input)
    overwrite : replace the data set at ``path``; without it an existing one raises
        ``FileExistsError``, even one another process saved a moment ago

    Readers see the old version or the new one, never a mix, and a kill at any moment leaves one of
    them whole. Two processes saving at once take turns.
    """
    path = Path(path)
    images, labels = np.asarray(images), np.asarray(labels)
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"save_dataset: dtype must be 'float32' or 'uint8', got {dtype!r}")
    meta = dict(meta)
    meta.setdefault("label_names", [f"label_{i}" for i in range(labels.shape[1] if labels.ndim == 2 else 0)])
    _check_arrays(images, labels, meta, where=f"save_dataset({path})")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"save_dataset: {path} is a file, not a data set folder")
    if not overwrite and _holds_a_dataset(path):  # said early; checked again under the lock
        raise FileExistsError(f"save_dataset: {path} holds a data set; pass overwrite=True to replace it")
    if path.is_dir() and not _holds_a_dataset(path) and _foreign_entries(path):
        raise FileExistsError(f"save_dataset: {path} holds other files ({', '.join(_foreign_entries(path)[:3])}) "
                              "and no data set; choose a new or an empty folder")
    if dtype == "uint8" and images.dtype != np.uint8:
        images = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    elif dtype == "float32":
        images = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with atomic.locked(path):
            if not overwrite and _holds_a_dataset(path):
                raise FileExistsError(f"save_dataset: {path} holds a data set, saved by another process "
                                      "meanwhile; pass overwrite=True to replace it")
            _publish(path, images, labels.astype(np.uint8), meta)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        raise atomic.write_failed(exc, path, "save_dataset") from exc
    return path


def _publish(path: Path, images: np.ndarray, labels: np.ndarray, meta: dict) -> None:
    """Under the writers' lock: write a new version, point ``current`` at it, remove the others."""
    current = _pointed_at(path, "save_dataset") if (path / POINTER).is_file() else None
    for stale in _versions(path):  # left by killed saves (no other writer runs now)
        if stale != current:
            shutil.rmtree(path / stale, ignore_errors=True)
    version = path / f"v-{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        version.mkdir()  # 0777 less the umask, like any folder
        for name, content in (("images.npy", images), ("labels.npy", labels),
                              ("meta.json", json.dumps(meta, indent=2, default=_json_default) + "\n")):
            _write_synced(version / name, content)
        atomic.write_file(path / POINTER, lambda f: f.write(version.name.encode() + b"\n"), "save_dataset")
    except BaseException:
        if (path / POINTER).read_bytes().strip() != version.name.encode():  # not published
            shutil.rmtree(version, ignore_errors=True)
        raise
    # Published: what readers may still hold open goes (on Windows, at a later save).
    for old in _versions(path):
        if old != version.name:
            shutil.rmtree(path / old, ignore_errors=True)
    for name in FILES:  # a folder made by hand, now replaced by versions
        (path / name).unlink(missing_ok=True)


def _write_synced(file: Path, content) -> None:
    """Write an array (as .npy) or a text, and flush it to the disk before it is published."""
    with atomic.create_file(file) as f:
        if isinstance(content, str):
            f.write(content.encode("utf-8"))
        else:
            np.save(f, content)
        f.flush()
        os.fsync(f.fileno())


def _versions(path: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(path) if _VERSION.fullmatch(entry.name) and entry.is_dir())


def _pointed_at(path: Path, owner: str = "load_dataset") -> str | None:
    """The version folder ``current`` names, None without a pointer (a folder made by hand)."""
    try:
        name = (path / POINTER).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{owner}: {path / POINTER} is damaged: {exc}") from exc
    if not _VERSION.fullmatch(name):
        raise ValueError(f"{owner}: {path / POINTER} is damaged: it should name a version folder "
                         f"(v-<number>-<number>-<8 hex digits>), got {name[:40]!r}")
    return name


def _holds_a_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / POINTER).is_file() or any((path / name).exists() for name in FILES))


def _foreign_entries(path: Path) -> list[str]:
    """What ``save_dataset`` did not put there (its lock, killed saves' versions and temporaries)."""
    ours = lambda name: (name in (POINTER, atomic.LOCK_NAME) or _VERSION.fullmatch(name)
                         or atomic.owner_of(path / name, path / POINTER) is not None)
    return sorted(entry.name for entry in os.scandir(path) if not ours(entry.name))


def load_dataset(path, mmap: bool | None = None) -> Dataset:
    """Read and validate a data set folder.

    Parameters
    ----------
    path : the folder
    mmap : memory-map ``images.npy`` (read-only); ``None`` does so for files over 256 MiB

    Returns
    -------
    Dataset(images, labels, meta): images (N, H, W, C) as stored (uint8 or float32), labels
    (N, L) as stored, meta a dict, all three from one version.

    Raises
    ------
    FileNotFoundError for a missing folder or file; ValueError, naming the file, for a file that
    is empty, truncated or not a .npy array, a wrong rank or dtype, mismatched N, labels outside
    {0, 1}, float pixels outside [0, 1] (NaN and inf included), or a label count that disagrees
    with meta.json.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"load_dataset: {path} is not a folder")
    for _ in range(_READ_ATTEMPTS):
        version = _pointed_at(path)
        folder = path if version is None else path / version
        try:
            opened = [open(folder / name, "rb") for name in FILES]
        except FileNotFoundError as exc:
            if version is not None and _pointed_at(path) != version:
                continue  # replaced while we opened it: read the new version
            missing = Path(exc.filename)
            raise FileNotFoundError(f"load_dataset: {missing} is missing (a data set needs "
                                    f"{', '.join(FILES)})") from exc
        with opened[0] as image_file, opened[1] as label_file, opened[2] as meta_file:
            return _read_version(folder, image_file, label_file, meta_file, mmap)
    raise OSError(f"load_dataset: {path} was replaced {_READ_ATTEMPTS} times while it was being opened; try again")


def _read_version(folder: Path, image_file, label_file, meta_file, mmap: bool | None) -> Dataset:
    """Parse and check the three open files of one version (they cannot change under us)."""
    try:
        meta = json.loads(meta_file.read().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"load_dataset: {folder / 'meta.json'} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"load_dataset: {folder / 'meta.json'} must hold a JSON object, got {type(meta).__name__}")
    if mmap is None:
        mmap = os.fstat(image_file.fileno()).st_size > _MMAP_BYTES
    images = _load_npy(image_file, folder / "images.npy", mmap)
    labels = _load_npy(label_file, folder / "labels.npy", False)
    _check_arrays(images, labels, meta, where=str(folder))
    return Dataset(images, labels, meta)


def _load_npy(file, name: Path, mmap: bool) -> np.ndarray:
    """One array from an open .npy file, never pickled objects; a damaged file raises ValueError
    naming it. A memory map is made from the open file, so it stays valid when the version is removed."""
    try:
        if not mmap:
            array = np.load(file, allow_pickle=False)
            if not isinstance(array, np.ndarray):
                array.close()
                raise ValueError("it is an archive of several arrays, expected one .npy array")
            return array
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        if dtype.hasobject:
            raise ValueError("it holds Python objects, expected numbers")
        return np.memmap(file, dtype=dtype, mode="r", shape=shape, order="F" if fortran_order else "C",
                         offset=file.tell())
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"load_dataset: {name} is not a readable .npy array (empty, truncated or not "
                         f"written by NumPy): {exc}") from exc


def _check_arrays(images, labels, meta, where: str) -> None:
    """Validate shapes, dtypes and values; errors name the file at fault."""
    if images.ndim != 4:
        raise ValueError(f"{where}/images.npy: expected rank 4 (N, H, W, C), got shape {images.shape}")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise ValueError(f"{where}/images.npy: expected uint8 or float pixels, got {images.dtype}")
    if labels.ndim != 2:
        raise ValueError(f"{where}/labels.npy: expected rank 2 (N, L), got shape {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{where}: images.npy has N={len(images)} images but labels.npy has N={len(labels)} rows")
    if labels.dtype.kind not in "biuf" or not np.all((labels == 0) | (labels == 1)):
        bad = labels[(labels != 0) & (labels != 1)] if labels.dtype.kind in "biuf" else labels.dtype
        raise ValueError(f"{where}/labels.npy: expected values in {{0, 1}}, found {np.unique(bad)[:5]}")
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != labels.shape[1]:
        count = len(names) if isinstance(names, list) else "no"
        raise ValueError(f"{where}/meta.json: expected label_names with {labels.shape[1]} entries "
                         f"(the columns of labels.npy), got {count}")
    if images.dtype.kind == "f":
        for start in range(0, len(images), 4096):  # a block at a time: fine for memory maps
            block = images[start:start + 4096]
            last = start + len(block) - 1
            if not np.isfinite(block).all():
                raise ValueError(f"{where}/images.npy: NaN or inf pixels in images {start}..{last}")
            low, high = block.min(), block.max()
            if low < 0 or high > 1:
                raise ValueError(f"{where}/images.npy: float pixels must lie in [0, 1], found values from "
                                 f"{low:g} to {high:g} in images {start}..{last} (damaged bytes, or images "
                                 "not scaled to [0, 1]?)")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"meta.json: cannot serialise {type(value).__name__}")


def split(images: np.ndarray, labels: np.ndarray, random_state: int = 42):
    """Train / valid / test split, 80 / 10 / 10, as the seed script does with scikit-learn.

    Two calls of ``train_test_split(..., random_state=random_state)``: first 20% held out, then
    the held-out part halved (valid first, test second). The indices equal scikit-learn's
    (``RandomState(random_state).permutation``; the test part takes ``ceil(test_size * n)``
    samples from the front), so the same data split the same way without scikit-learn.

    Returns
    -------
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test)
    """
    if len(images) != len(labels):
        raise ValueError(f"split: images and labels differ in length: {len(images)} and {len(labels)}")
    if len(images) < 3:
        raise ValueError(f"split: need at least 3 samples, got {len(images)}")
    train, held = _train_test_indices(len(images), 0.2, random_state)
    valid, test = _train_test_indices(len(held), 0.5, random_state)
    valid, test = held[valid], held[test]
    return ((images[train], labels[train]), (images[valid], labels[valid]), (images[test], labels[test]))


def _train_test_indices(n: int, test_size: float, random_state: int):
    """scikit-learn's ShuffleSplit for one split: (train indices, test indices)."""
    n_test = int(np.ceil(test_size * n))
    permutation = np.random.RandomState(random_state).permutation(n)
    return permutation[n_test:], permutation[:n_test]
