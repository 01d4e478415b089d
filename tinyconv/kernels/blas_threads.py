"""BLAS threads that follow the machine's load: one thread while other processes want the cores.

Why. OpenBLAS's threaded matrix product makes its threads wait for each other several times
inside every product (each waits for the panels the others pack, then for the others to finish),
and they wait by spinning, not sleeping. Alone, that costs nothing. When another process takes a
core, a thread spins through a whole scheduler time slice for a partner that is not running, and a
training step makes hundreds of products (36 per Winograd product group): beside a second training
on 2 cores the step took 3.5 s instead of 86 ms, and a profile of the slow process showed about 60%
of its CPU time in that spinning (OpenBLAS's ``inner_thread`` and ``exec_blas``). One BLAS thread
has no partner to wait for. numba's parallel loops keep their threads: at their end, waiting
threads sleep (``OMP_WAIT_POLICY=PASSIVE``, see ``cpu_tuning``), so a late partner costs only the
wait, and two threads keep their fair share of a shared machine.

How. Over windows of training steps (``step()``) at least ``WINDOW_SECONDS`` long, the governor
reads the CPU time used on this process's cores by everyone (``/proc/stat``) and by this process;
the difference, per second, is what other processes used ("others", in cores). After each window
it sets the BLAS thread count for the next steps with ``threads_for_load``: all of them while the
others use at most ``SLACK`` of a core, one fewer per core they use beyond that, at least one. It
drops at once and comes back only after ``QUIET_WINDOWS`` windows in a row agree, so one lucky
window does not bring the spinning back.

Your settings win: nothing changes when ``OPENBLAS_NUM_THREADS``, ``GOTO_NUM_THREADS`` or
``OMP_NUM_THREADS`` is set, or ``TINYCONV_ADAPT_THREADS=0``; and while the library's thread count is
not the one the governor set last (``threadpoolctl.threadpool_limits``, ``openblas_set_num_threads``),
it is left alone. Off Linux, or with another BLAS, nothing happens. Thread counts change how the
products are split, so results may differ in float32 rounding, never more.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass

from .cpu_tuning import loaded_openblas_libraries

SLACK = 0.25  # cores of other load tolerated before giving up a thread (daemons, a terminal)
WINDOW_SECONDS = 0.5  # of training per decision: /proc/stat counts in 10 ms ticks per core
QUIET_WINDOWS = 2  # windows in a row that must allow more threads before they come back
USER_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def threads_for_load(others: float, cores: int, most: int) -> int:
    """BLAS threads to run when other processes use ``others`` cores of our ``cores``: one per core
    they leave free (all of them while they use at most ``SLACK``), between 1 and ``most``."""
    free = math.floor(cores - others + SLACK)
    return max(1, min(most, free))


@dataclass
class ThreadGovernor:
    """The decisions, fed with measured windows: no clocks or libraries in here, so it can be tested
    with made-up load. ``threads`` is the count to run now."""
    cores: int
    most: int
    threads: int = 0
    quiet_windows: int = 0

    def __post_init__(self):
        self.threads = self.threads or self.most

    def observe(self, wall: float, busy: float, own: float) -> int:
        """Account one window: ``wall`` seconds long, during which the process's cores were busy for
        ``busy`` CPU-seconds, ``own`` of them this process's. Returns the thread count from now on."""
        # /proc/stat counts in ticks, so ``busy`` can come out a little below ``own``.
        others = min(max((busy - own) / wall, 0.0), float(self.cores))
        self._decide(threads_for_load(others, self.cores, self.most))
        return self.threads

    def _decide(self, wanted: int) -> None:
        if wanted < self.threads:
            self.threads, self.quiet_windows = wanted, 0
        elif wanted > self.threads:
            self.quiet_windows += 1
            if self.quiet_windows >= QUIET_WINDOWS:
                self.threads, self.quiet_windows = wanted, 0
        else:
            self.quiet_windows = 0


def openblas_function(lib, name: str):
    """``lib``'s function ``name``, under any of the names OpenBLAS builds export it as (the wheels
    of NumPy and SciPy prefix ``scipy_`` and, with 64-bit integers, suffix ``64_``); else None."""
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64_"):
            function = getattr(lib, prefix + name + suffix, None)
            if function is not None:
                return function
    return None


class OpenBlasThreads:
    """The thread counts of the loaded OpenBLAS libraries (NumPy's, SciPy's) as pairs of get and set
    functions; each is changed only while it still holds the value this class set last."""

    def __init__(self, controls):
        self.controls = controls
        self.ours = [get() for get, _ in controls]
        self.most = max(self.ours, default=1)

    def set(self, threads: int) -> None:
        for index, (get, set_threads) in enumerate(self.controls):
            if get() != self.ours[index]:
                continue  # someone else set it since (threadpoolctl): theirs wins
            if threads != self.ours[index]:
                set_threads(threads)
                self.ours[index] = threads


def cores_of_this_process() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def busy_seconds(cores: list[int]) -> float:
    """CPU-seconds the given cores have spent busy since boot, by anyone (from ``/proc/stat``)."""
    wanted = {f"cpu{core}" for core in cores}
    ticks = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name in wanted:
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
                ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


def user_decides_threads(environ=os.environ) -> bool:
    return (environ.get("TINYCONV_ADAPT_THREADS", "1") == "0"
            or any(name in environ for name in USER_THREAD_VARIABLES))


class LoadAdapter:
    """Cuts the training steps into windows of at least ``WINDOW_SECONDS``, measures each with
    ``clocks`` (a function returning wall, busy and own seconds, the wall time from ``wall_clock``)
    and hands the thread count the ``governor`` chooses to ``blas``. ``clocks`` is read only when a
    window begins or ends (reading /proc/stat takes a quarter of a millisecond on a busy machine); a
    pause between steps longer than a window begins a new one, so that the load of long ago does
    not count."""

    def __init__(self, governor: ThreadGovernor, blas: OpenBlasThreads, clocks, wall_clock=time.perf_counter):
        self.governor, self.blas, self.clocks, self.wall_clock = governor, blas, clocks, wall_clock
        self.window_start = None  # clocks() when the current window began
        self.last_step_end = -math.inf

    @contextlib.contextmanager
    def step(self):
        if self.wall_clock() - self.last_step_end > WINDOW_SECONDS:
            self.window_start = self.clocks()
        try:
            yield
        finally:
            self.last_step_end = self.wall_clock()
            if self.last_step_end - self.window_start[0] >= WINDOW_SECONDS:
                now = self.clocks()
                wall, busy, own = (b - a for a, b in zip(self.window_start, now))
                self.blas.set(self.governor.observe(wall, busy, own))
                self.window_start = now


def adapter_for_this_process():
    """A LoadAdapter for the loaded OpenBLAS libraries, or None where there is nothing to adapt:
    the user set the threads, no /proc/stat, no OpenBLAS, or a single thread to begin with."""
    if user_decides_threads() or not os.path.exists("/proc/stat"):
        return None
    controls = [(openblas_function(lib, "openblas_get_num_threads"),
                 openblas_function(lib, "openblas_set_num_threads")) for lib in loaded_openblas_libraries()]
    controls = [pair for pair in controls if None not in pair]
    blas = OpenBlasThreads(controls)
    if blas.most < 2:
        return None
    cores = cores_of_this_process()
    return LoadAdapter(ThreadGovernor(cores=len(cores), most=blas.most), blas,
                       clocks=lambda: (time.perf_counter(), busy_seconds(cores), time.process_time()))


_adapter = None


def step():
    """Context manager around one training step: measures it and sets the BLAS threads for the next."""
    global _adapter
    if _adapter is None:
        _adapter = adapter_for_this_process() or False
    return _adapter.step() if _adapter else contextlib.nullcontext()
