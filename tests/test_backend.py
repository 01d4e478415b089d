"""The array-module seam and the kernel switch."""
import builtins
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv
from tinyconv import backend, kernels
from tinyconv.kernels import cpu, reference
from tinyconv.zoo import seed_cnn

pytestmark = pytest.mark.backend


def test_numpy_arrays_use_numpy():
    assert tinyconv.get_array_module(np.zeros(3)) is np
    assert backend.to_numpy(backend.to_device([1.0, 2.0])).tolist() == [1.0, 2.0]


def test_gpu_request_without_cupy_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(RuntimeError, match=r"needs CuPy.*pip install -e \"\.\[gpu\]\".*cupy-cuda13x"):
        tinyconv.set_device("gpu")
    assert tinyconv.get_device() == "cpu"


def test_unknown_device():
    with pytest.raises(ValueError, match="'cpu' or 'gpu', got 'tpu'"):
        tinyconv.set_device("tpu")


def test_reference_switch_routes_every_kernel(rng):
    assert kernels.module_for(np.zeros(1)) is cpu
    with kernels.reference_kernels():
        assert kernels.module_for(np.zeros(1)) is reference
    assert kernels.module_for(np.zeros(1)) is cpu


def test_reference_and_numba_paths_train_identically(rng):
    """One whole training step on each path: the same loss and nearly the same weights."""
    x = rng.random((4, 12, 12, 3)).astype(np.float32)
    y = (rng.random((4, 18)) > 0.5).astype(np.float32)
    results = []
    for use_reference in (False, True):
        tinyconv.set_seed(3)
        model = seed_cnn((12, 12, 3))
        model.compile("adam", "binary_crossentropy")
        with kernels.reference_kernels(use_reference):
            loss = model.train_step((x, y))["loss"]
        results.append((loss, model.get_weights()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    # Adam's first step moves a weight by lr * g / (|g| + epsilon), about lr = 1e-3 for most weights;
    # for a gradient within a few epsilon of zero, float32 rounding of g decides a fraction of it (at
    # 12 px the layers run F(6x6), whose two paths round apart by ~1.5e-6 there). A wrong kernel
    # moves weights by the whole step: 1% of it is the bound.
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_seed_fixes_initialisation():
    tinyconv.set_seed(11)
    a = seed_cnn((8, 8, 3)).get_weights()
    tinyconv.set_seed(11)
    b = seed_cnn((8, 8, 3)).get_weights()
    tinyconv.set_seed(12)
    c = seed_cnn((8, 8, 3)).get_weights()
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])


TUNING_PROBE = """
import os
import numpy as np
from threadpoolctl import threadpool_info
import tinyconv                     # sets the environment and puts OpenBLAS on one thread
blas = [pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"]
print(os.environ.get("OMP_WAIT_POLICY"), set(blas))
"""


@pytest.mark.parametrize("user_env, expected", [({}, "PASSIVE {1}"),
                                                ({"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_NUM_THREADS": "2"},
                                                 "ACTIVE {1}")])
def test_importing_tinyconv_makes_idle_threads_sleep_and_blas_single_threaded(user_env, expected):
    """OpenBLAS runs on one thread whatever the user asked of it (``products.py`` splits the
    products; ``OPENBLAS_NUM_THREADS`` sets that pool's width); a user's OMP_WAIT_POLICY wins."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl reads OpenBLAS's thread count")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", TUNING_PROBE], env={**env, **user_env},
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == expected.split()
