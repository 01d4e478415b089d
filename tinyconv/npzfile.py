"""Reading and writing ``.npz`` files safely: atomic writes, clear errors on damaged files.

Weights files (``model.save_weights``) and training checkpoints both use these.
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile

import numpy as np


def write_npz_atomically(path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_npz(path) -> dict[str, np.ndarray]:
    """Read every array of an .npz file, turning a missing or damaged file into a clear error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, io.UnsupportedOperation) as exc:
        raise ValueError(f"{path}: not a readable .npz weights file (truncated or corrupt?): {exc}") from exc
