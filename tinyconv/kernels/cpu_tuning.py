"""Process settings that let the CPU kernels and the matrix products share the cores.

A training step alternates matrix products (``products.py``, on tinyconv's own threads) with numba
kernels (numba's OpenMP pool), each as wide as the machine, and allocates the same ~100 MB of
arrays every step. ``tune_process`` changes three defaults of the libraries underneath once, when
tinyconv is imported (``tinyconv/__init__.py``), and leaves alone whatever the user has set:

- OpenMP threads spin after each numba kernel, taking a core from the next matrix product:
  ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep.
- OpenBLAS splits a product by the thread count, so its bits depend on it: OpenBLAS runs on one
  thread, and ``products.py`` splits the products in pieces that depend on the shapes alone.
- glibc hands large freed blocks back to the OS and faults them in again on the next step:
  raised malloc thresholds keep them (``TINYCONV_KEEP_FREED_MEMORY=0`` turns this off).

The numbers behind each are in docs/performance.md.
"""
from __future__ import annotations

import ctypes
import os
import sys


def tune_process() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _openblas_on_one_thread()
    _keep_freed_memory_in_process()


def loaded_openblas_libraries() -> list:
    """The OpenBLAS libraries loaded in this process (NumPy's, and SciPy's when it has its own),
    found in the process's memory map."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:  # not Linux
        return []
    libraries = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if openblas_function(lib, "openblas_get_num_threads") is not None:
            libraries.append(lib)
    return libraries


def openblas_function(lib, name: str):
    """``lib``'s function ``name``, under any of the names OpenBLAS builds export it as (the wheels
    of NumPy and SciPy prefix ``scipy_`` and, with 64-bit integers, suffix ``64_``); else None."""
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64_"):
            function = getattr(lib, prefix + name + suffix, None)
            if function is not None:
                return function
    return None


def _openblas_on_one_thread() -> None:
    """Run every loaded OpenBLAS on the calling thread alone.

    tinyconv splits its matrix products itself, in pieces that depend only on the shapes
    (``products.py``), so that their bits do not depend on the thread count; each piece must then
    be one single-threaded BLAS call. Your own NumPy products in this process run on one thread
    too; ``threadpoolctl`` can raise the count again, at the cost of that guarantee.
    """
    for lib in loaded_openblas_libraries():
        set_threads = openblas_function(lib, "openblas_set_num_threads")
        if set_threads is not None:
            set_threads(1)


def _keep_freed_memory_in_process() -> None:
    """Let glibc's malloc reuse freed large blocks instead of returning them to the OS.

    By default glibc serves each large block with a fresh mmap and unmaps it on free, so every
    step pays a page fault and a zero-fill per 4 KiB page (about a fifth of the step). Raising the
    mmap and trim thresholds keeps those blocks in the heap for the next step. Peak memory is
    unchanged; memory is just not handed back between steps. No effect off glibc.
    """
    if os.environ.get("TINYCONV_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 31)
    except (OSError, AttributeError):  # another C library (musl): nothing to tune
        pass
