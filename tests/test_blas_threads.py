"""The BLAS thread governor: decisions from made-up load, the user's settings win, the step is wired."""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv
from tinyconv.kernels import blas_threads
from tinyconv.kernels.blas_threads import LoadAdapter, OpenBlasThreads, ThreadGovernor, threads_for_load
from tinyconv.zoo import seed_cnn


@pytest.mark.parametrize("others, cores, most, expected", [
    (0.0, 2, 2, 2),    # alone
    (0.2, 2, 2, 2),    # a daemon waking now and then
    (0.3, 2, 2, 1),    # more than SLACK of a core taken
    (1.0, 2, 2, 1),    # a busy single-threaded process
    (2.0, 2, 2, 1),    # two busy threads: never fewer than one
    (3.0, 8, 8, 5),    # one thread per core left free
    (0.0, 8, 4, 4),    # never more than the library's own count
])
def test_threads_for_load(others, cores, most, expected):
    assert threads_for_load(others, cores, most) == expected


def window(others: float, own: float = 1.5, wall: float = 1.0):
    """One step of ``wall`` seconds in which this process used ``own`` cores and the others ``others``."""
    return wall, (own + others) * wall, own * wall


def test_governor_drops_at_once_and_comes_back_after_quiet_windows():
    governor = ThreadGovernor(cores=2, most=2)
    assert [governor.observe(*window(0.05)) for _ in range(3)] == [2, 2, 2]
    assert governor.observe(*window(1.0, own=1.0)) == 1                     # a second training starts
    assert governor.observe(*window(0.05, own=1.0)) == 1                    # one quiet window is not enough
    assert governor.observe(*window(0.05, own=1.0)) == 2                    # two in a row are
    assert governor.observe(*window(1.0, own=1.0)) == 1
    assert governor.observe(*window(0.05, own=1.0)) == 1
    assert governor.observe(*window(0.9, own=1.0)) == 1                     # a busy window resets the count
    assert governor.observe(*window(0.05, own=1.0)) == 1


def test_governor_reads_tick_rounding_below_zero_as_quiet():
    governor = ThreadGovernor(cores=2, most=2, threads=1)
    # /proc/stat counts in ticks, so the cores' busy time can come out below the process's own.
    for _ in range(blas_threads.QUIET_WINDOWS):
        threads = governor.observe(wall=1.0, busy=1.7, own=1.8)
    assert threads == 2


class FakeLibrary:
    def __init__(self, threads):
        self.threads = threads

    def controls(self):
        return self.get, self.set

    def get(self):
        return self.threads

    def set(self, threads):
        self.threads = threads


def test_a_thread_count_set_by_someone_else_wins_until_they_restore_ours():
    numpy_blas, scipy_blas = FakeLibrary(2), FakeLibrary(2)
    blas = OpenBlasThreads([numpy_blas.controls(), scipy_blas.controls()])
    assert blas.most == 2
    blas.set(1)
    assert (numpy_blas.threads, scipy_blas.threads) == (1, 1)
    numpy_blas.threads = 2            # like threadpoolctl.threadpool_limits entering its block
    blas.set(1)
    blas.set(2)
    blas.set(1)
    assert (numpy_blas.threads, scipy_blas.threads) == (2, 1)
    numpy_blas.threads = 1            # ... and restoring our value when it leaves
    blas.set(2)
    assert (numpy_blas.threads, scipy_blas.threads) == (2, 2)


class FakeMachine:
    """The clocks of a made-up machine: this process uses ``own`` cores while it steps, the other
    processes ``others`` cores all the time."""

    def __init__(self, others=0.0, own=1.5):
        self.others, self.own = others, own
        self.wall = self.busy = self.own_cpu = 0.0

    def clocks(self):
        return self.wall, self.busy, self.own_cpu

    def wall_clock(self):
        return self.wall

    def step(self, adapter, seconds):
        with adapter.step():
            self.wall += seconds
            self.busy += (self.own + self.others) * seconds
            self.own_cpu += self.own * seconds

    def pause(self, seconds):
        self.wall += seconds
        self.busy += self.others * seconds


def test_the_adapter_decides_once_per_window_of_steps_and_forgets_pauses():
    machine, library = FakeMachine(others=1.0), FakeLibrary(2)
    adapter = LoadAdapter(ThreadGovernor(cores=2, most=2), OpenBlasThreads([library.controls()]),
                          machine.clocks, machine.wall_clock)
    quarter = blas_threads.WINDOW_SECONDS / 4
    seen = []
    for _ in range(4):
        machine.step(adapter, quarter)
        seen.append(library.threads)
    assert seen == [2, 2, 2, 1]  # a decision when the fourth step completes a window
    machine.others = 2.0
    machine.pause(10 * blas_threads.WINDOW_SECONDS)  # busy others while this process did not step
    machine.others = 0.0
    for _ in range(4 * blas_threads.QUIET_WINDOWS):
        machine.step(adapter, quarter)
    assert library.threads == 2  # had the pause counted, its window would not have been quiet


@pytest.mark.parametrize("environ, decides", [
    ({}, False),
    ({"OPENBLAS_NUM_THREADS": "2"}, True),
    ({"OMP_NUM_THREADS": "1"}, True),
    ({"GOTO_NUM_THREADS": "4"}, True),
    ({"TINYCONV_ADAPT_THREADS": "0"}, True),
    ({"TINYCONV_ADAPT_THREADS": "1"}, False),
    ({"NUMBA_NUM_THREADS": "1"}, False),  # numba's pool is not the one governed
])
def test_user_thread_settings_switch_the_governor_off(environ, decides):
    assert blas_threads.user_decides_threads(environ) == decides


# A made-up machine: two cores, OpenBLAS at two threads when training starts, a fake /proc/stat in
# which the other processes use `others` cores, and every step a window; so the thread counts the
# training steps leave behind are deterministic.
STEP_PROBE = """
import time
import numpy as np
import tinyconv
from tinyconv.kernels import blas_threads
from tinyconv.zoo import seed_cnn

blas_threads.WINDOW_SECONDS = 0.0
others = [1.0]
blas_threads.busy_seconds = lambda cores: time.process_time() + others[0] * time.perf_counter()
blas_threads.cores_of_this_process = lambda: [0, 1]
numpy_blas = blas_threads.loaded_openblas_libraries()[0]
get = blas_threads.openblas_function(numpy_blas, "openblas_get_num_threads")
blas_threads.openblas_function(numpy_blas, "openblas_set_num_threads")(2)
tinyconv.set_seed(0)
model = seed_cnn((8, 8, 3))
model.compile("adam", "binary_crossentropy")
x, y = np.zeros((4, 8, 8, 3), np.float32), np.zeros((4, 18), np.float32)
seen = [get()]
for load in (1.0, 0.0, 0.0):
    others[0] = load
    model.train_step(x, y)
    seen.append(get())
print(*seen)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="OpenBLAS runs one thread on one core")
@pytest.mark.parametrize("user_env, expected", [({}, "2 1 1 2"),
                                                ({"OPENBLAS_NUM_THREADS": "2"}, "2 2 2 2"),
                                                ({"TINYCONV_ADAPT_THREADS": "0"}, "2 2 2 2")])
def test_training_steps_follow_the_load_unless_the_user_set_threads(user_env, expected):
    env = {k: v for k, v in os.environ.items()
           if k not in blas_threads.USER_THREAD_VARIABLES + ("TINYCONV_ADAPT_THREADS",)}
    result = subprocess.run([sys.executable, "-c", STEP_PROBE], env={**env, **user_env},
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == expected.split()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="OpenBLAS runs one thread on one core")
def test_a_step_on_one_blas_thread_equals_one_on_two_up_to_float32_rounding(monkeypatch):
    numpy_blas = blas_threads.loaded_openblas_libraries()[0]
    get = blas_threads.openblas_function(numpy_blas, "openblas_get_num_threads")
    set_threads = blas_threads.openblas_function(numpy_blas, "openblas_set_num_threads")
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3)).astype(np.float32)
    y = (rng.random((8, 18)) > 0.5).astype(np.float32)
    monkeypatch.setattr(blas_threads, "step", contextlib.nullcontext)  # the counts set here must hold
    previous, weights = get(), []
    try:
        for threads in (1, 2):
            set_threads(threads)
            tinyconv.set_seed(0)
            model = seed_cnn((16, 16, 3))
            model.compile("adam", "binary_crossentropy")
            losses = [model.train_step(x, y)[0] for _ in range(3)]
            weights.append((losses, model.get_weights()))
    finally:
        set_threads(previous)
    (losses_1, weights_1), (losses_2, weights_2) = weights
    np.testing.assert_allclose(losses_1, losses_2, rtol=1e-5)
    for w1, w2 in zip(weights_1, weights_2):
        np.testing.assert_allclose(w1, w2, rtol=1e-4, atol=1e-5)
