"""Data sets on disk, and the train/valid/test split.

A data set is a folder with three files, so that a user's own images work the same way as
simulated ones:

- ``images.npy``: (N, H, W, C), uint8 (0-255) or float32;
- ``labels.npy``: (N, L), values in {0, 1} (any integer, bool or float dtype);
- ``meta.json``: at least ``{"label_names": [... L names ...]}``; the simulator also records its
  version, parameters, seed and the creation time.

``save_dataset`` writes atomically (a temporary folder, then a rename; see ``tinyconv.atomic``);
``load_dataset`` checks everything it reads (shapes, dtypes, pixels in [0, 1], labels in {0, 1})
and names the file at fault.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import atomic

FILES = ("images.npy", "labels.npy", "meta.json")
_MMAP_BYTES = 256 * 2 ** 20  # memory-map image files larger than this


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
    overwrite : replace an existing folder (the old one is removed only after the new one is complete)
    """
    path = Path(path)
    images, labels = np.asarray(images), np.asarray(labels)
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"save_dataset: dtype must be 'float32' or 'uint8', got {dtype!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"save_dataset: {path} exists; pass overwrite=True to replace it")
    meta = dict(meta)
    meta.setdefault("label_names", [f"label_{i}" for i in range(labels.shape[1] if labels.ndim == 2 else 0)])
    _check_arrays(images, labels, meta, where=f"save_dataset({path})")
    if dtype == "uint8" and images.dtype != np.uint8:
        images = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    elif dtype == "float32":
        images = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    _finish_an_interrupted_swap(path)
    atomic.remove_stale(path, kinds=("tmp", "old"))
    staged = atomic.temporary_path(path)
    old = None
    try:
        staged.mkdir()  # 0777 less the umask, like any folder
        for name, content in (("images.npy", images), ("labels.npy", labels.astype(np.uint8)),
                              ("meta.json", json.dumps(meta, indent=2, default=_json_default) + "\n")):
            _write_synced(staged / name, content)
        if path.exists():  # swap in the new folder, then drop the old one
            old = atomic.temporary_path(path, "old")
            path.rename(old)
            staged.rename(path)  # a kill before this line: the next load or save finishes the swap
            shutil.rmtree(old)
        else:
            staged.rename(path)
    except BaseException as exc:
        if old is not None and old.exists() and not path.exists():
            old.rename(path)  # interrupted between the renames: put the old copy back
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, OSError):
            raise atomic.write_failed(exc, path, "save_dataset") from exc
        raise
    return path


def _write_synced(file: Path, content) -> None:
    """Write an array (as .npy) or a text, and flush it to the disk before the folder is renamed."""
    with atomic.create_file(file) as f:
        if isinstance(content, str):
            f.write(content.encode("utf-8"))
        else:
            np.save(f, content)
        f.flush()
        os.fsync(f.fileno())


def _finish_an_interrupted_swap(path: Path) -> None:
    """A ``save_dataset(overwrite=True)`` killed between its two renames leaves no folder at ``path``:
    the old copy under ``.<name>.old-<pid>-...`` and the complete new one under ``.<name>.tmp-<pid>-...``.
    When that process is gone, finish its work: the new copy goes to ``path``, the old one away."""
    if path.exists() or not path.parent.is_dir():
        return
    for old, pid in atomic.temporaries(path, "old"):
        if pid == os.getpid() or atomic.process_exists(pid):
            continue
        new = [staged for staged, owner in atomic.temporaries(path) if owner == pid]
        (new[0] if new else old).rename(path)  # the new copy was complete before the old one moved
        shutil.rmtree(old, ignore_errors=True)
        return


def load_dataset(path, mmap: bool | None = None) -> Dataset:
    """Read and validate a data set folder.

    Parameters
    ----------
    path : the folder
    mmap : memory-map ``images.npy`` (read-only); ``None`` does so for files over 256 MiB

    Returns
    -------
    Dataset(images, labels, meta): images (N, H, W, C) as stored (uint8 or float32), labels
    (N, L) as stored, meta a dict.

    Raises
    ------
    FileNotFoundError for a missing folder or file; ValueError, naming the file, for a file that
    is empty, truncated or not a .npy array, a wrong rank or dtype, mismatched N, labels outside
    {0, 1}, float pixels outside [0, 1] (NaN and inf included), or a label count that disagrees
    with meta.json.
    """
    path = Path(path)
    _finish_an_interrupted_swap(path)
    if not path.is_dir():
        raise FileNotFoundError(f"load_dataset: {path} is not a folder")
    for name in FILES:
        if not (path / name).is_file():
            raise FileNotFoundError(f"load_dataset: {path / name} is missing (a data set needs {', '.join(FILES)})")
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"load_dataset: {path / 'meta.json'} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"load_dataset: {path / 'meta.json'} must hold a JSON object, got {type(meta).__name__}")
    image_file = path / "images.npy"
    if mmap is None:
        mmap = image_file.stat().st_size > _MMAP_BYTES
    images = _load_npy(image_file, mmap)
    labels = _load_npy(path / "labels.npy", False)
    _check_arrays(images, labels, meta, where=str(path))
    return Dataset(images, labels, meta)


def _load_npy(file: Path, mmap: bool) -> np.ndarray:
    """``np.load`` of one array, never of pickled objects; a damaged file raises ValueError naming it."""
    try:
        array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"load_dataset: {file} is not a readable .npy array (empty, truncated or not "
                         f"written by NumPy): {exc}") from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"load_dataset: {file} holds an archive of several arrays, expected one .npy array")
    return array


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
