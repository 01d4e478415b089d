"""Process settings that let the CPU kernels and the BLAS matrix products share the cores.

A training step alternates BLAS matrix products (OpenBLAS's thread pool) with numba kernels
(numba's OpenMP pool), each as wide as the machine, and allocates the same ~100 MB of arrays
every step. Three defaults of the libraries underneath cost time here, measured in
docs/performance.md; ``tune_process_for_cpu_kernels`` changes them once, when the numba kernels
are first imported, and leaves alone whatever the user has set:

- OpenMP threads spin after each numba kernel, taking a core from the next matrix product:
  ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep.
- OpenBLAS threads spin after each matrix product (about 2**28 cycles, a tenth of a second),
  taking a core from the next numba kernel: a timeout of 2**16 cycles (``OPENBLAS_THREAD_TIMEOUT``).
- glibc hands large freed blocks back to the OS and faults them in again on the next step:
  raised malloc thresholds keep them (``TINYCONV_KEEP_FREED_MEMORY=0`` turns this off).
"""
from __future__ import annotations

import ctypes
import os
import sys

OPENBLAS_THREAD_TIMEOUT = "16"  # log2 of the cycles an idle OpenBLAS thread spins before sleeping


def tune_process_for_cpu_kernels() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _shorten_openblas_spin()
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
        if hasattr(lib, "openblas_read_env") and hasattr(lib, "blas_thread_shutdown_"):
            libraries.append(lib)
    return libraries


def _shorten_openblas_spin() -> None:
    """Make idle OpenBLAS threads sleep after 2**16 cycles instead of 2**28.

    OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it starts its threads, which NumPy's import has
    already done. So: set the variable, let each loaded OpenBLAS read its environment again, and
    stop its threads; the next matrix product starts them with the new timeout (the same restart
    NumPy relies on after a fork). This runs once, when tinyconv's CPU kernels are imported; an
    OpenBLAS loaded later reads the variable itself. Nothing happens with another BLAS, or when
    the user set the variable.
    """
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_THREAD_TIMEOUT
    for lib in loaded_openblas_libraries():
        lib.openblas_read_env()
        lib.blas_thread_shutdown_()


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
