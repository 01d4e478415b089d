"""Shared fixtures: every test starts from float32, seed 0, CPU, fresh layer names.

``device`` parametrizes a test over the available backends: "cpu" always, "gpu" (marked ``gpu``)
when CuPy and an NVIDIA GPU are present, skipped cleanly otherwise.
"""
import matplotlib
import numpy as np
import pytest

import tinyconv
from tinyconv import backend, kernels
from tinyconv.layers import reset_names

matplotlib.use("Agg")

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(autouse=True)
def clean_state():
    tinyconv.set_floatx("float32")
    tinyconv.set_seed(0)
    tinyconv.set_device("cpu")
    kernels.use_reference_kernels(False)
    reset_names()
    yield
    tinyconv.set_device("cpu")
    tinyconv.set_floatx("float32")


@pytest.fixture(params=DEVICES)
def device(request):
    """Run the test on each backend; sets the device and returns its name."""
    if request.param == "gpu" and not backend.gpu_available():
        pytest.skip("needs CuPy and an NVIDIA GPU")
    tinyconv.set_device(request.param)
    return request.param


@pytest.fixture
def float64():
    tinyconv.set_floatx("float64")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
