"""Where numba keeps the machine code of the CPU kernels between runs.

numba caches a compiled kernel in a ``__pycache__`` beside its source, else in the user's cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache``), or where ``NUMBA_CACHE_DIR`` says. Installed
read-only (a system or container install) with no writable home, it has nowhere to write, and
decorating a kernel with ``cache=True`` fails inside numba. ``cache_enabled()`` checks those places
first. When none can be written it points numba at a folder in the temporary directory, and when
even that fails it has the kernels compiled without a cache (each new process compiles again, a
few seconds); either way it says so in one line.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

SOURCE_CACHE = Path(__file__).resolve().parent / "__pycache__"


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (made if missing), as numba itself tries it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _user_cache() -> Path:
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
    except RuntimeError:  # no home folder at all
        return Path(os.sep, "nonexistent", ".cache", "numba")


def cache_enabled() -> bool:
    """True when the kernels can be cached on disk (``njit(cache=...)``), after pointing numba at a
    temporary folder if it has to be."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if (given and _writable(Path(given))) or _writable(SOURCE_CACHE) or _writable(_user_cache()):
        return True
    fallback = Path(tempfile.gettempdir()) / f"tinyconv-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"
    if _writable(fallback):
        os.environ["NUMBA_CACHE_DIR"] = str(fallback)
        from numba.core import config
        config.reload_config()
        print(f"tinyconv: no writable cache for compiled kernels beside the install ({SOURCE_CACHE}) or in "
              f"{_user_cache()}; using {fallback}", file=sys.stderr)
        return True
    print(f"tinyconv: no writable folder for compiled kernels ({SOURCE_CACHE}, {_user_cache()}, {fallback}): "
          "compiling them without a cache, in every new process", file=sys.stderr)
    return False
