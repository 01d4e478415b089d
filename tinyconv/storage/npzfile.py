"""Reading and writing ``.npz`` files safely: atomic writes, clear errors on damaged files.

Weights files (``model.save_weights``) and training checkpoints both use these.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from . import atomic

# The entry that marks a training checkpoint (its JSON document), so that a weights reader can
# tell a checkpoint from a weights file and say which function reads it.
CHECKPOINT_STATE_KEY = "__state__"


def write_npz_atomically(path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``
    (see ``tinyconv.atomic``: temporaries of earlier killed writes of ``path`` are removed first)."""
    atomic.write_file(path, lambda f: np.savez(f, **arrays), "saving")


def read_npz(path) -> dict[str, np.ndarray]:
    """Read every array of an .npz file, turning a missing or damaged file into a clear error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                loaded = None  # a plain .npy array
            else:
                with loaded:
                    arrays = {key: loaded[key] for key in loaded.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, io.UnsupportedOperation) as exc:
        raise ValueError(f"{path}: not a readable .npz weights file (truncated or corrupt?): {exc}") from exc
    if loaded is None:
        raise ValueError(f"{path}: holds a single NumPy array (.npy), not an .npz archive of named arrays "
                         "as model.save_weights writes")
    return arrays
