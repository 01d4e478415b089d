"""The loop kernels (kernels/loops.py) against im2col, the reference and numba kernels, and themselves."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyconv
from tinyconv import kernels
from tinyconv.diagnostics import gradcheck
from tinyconv.kernels import cpu, loops, reference
from tinyconv.layers import Conv2D, MaxPooling2D

pytestmark = pytest.mark.kernels

ROOT = Path(__file__).resolve().parents[1]

window_cases = dict(
    n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3),
    kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]), seed=st.integers(0, 10_000))


def built(layer, h, w, c):
    """The layer built for (h, w, c), or None when its window does not fit that input."""
    try:
        layer.build((h, w, c))
    except ValueError:
        return None
    return layer


@settings(max_examples=50, deadline=None)
@given(f=st.integers(1, 3), **window_cases)
def test_conv_loops_equal_im2col_forward_and_backward(n, h, w, c, f, kh, kw, sh, sw, padding, seed):
    rng = np.random.default_rng(seed)
    tinyconv.set_floatx("float64")
    layer = built(Conv2D(f, (kh, kw), strides=(sh, sw), padding=padding, algorithm="im2col"), h, w, c)
    if layer is None:
        return
    kernel, bias = rng.standard_normal((kh, kw, c, f)), rng.standard_normal(f)
    layer.set_weights([kernel, bias])
    x = rng.standard_normal((n, h, w, c))
    z = layer.forward(x)
    assert layer.cache[0] == "im2col"
    dz = rng.standard_normal(z.shape)
    dx = layer.backward(dz)

    np.testing.assert_allclose(loops.conv2d_forward(x, kernel, bias, layer.geometry), z, atol=1e-12)
    dkernel, dbias, dx_loops = loops.conv2d_backward(dz, x, kernel, layer.geometry)
    np.testing.assert_allclose(dkernel, layer.grads["kernel"], atol=1e-12)
    np.testing.assert_allclose(dbias, layer.grads["bias"], atol=1e-12)
    np.testing.assert_allclose(dx_loops, dx, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(f=st.integers(1, 3), **window_cases)
def test_conv_loops_backward_is_the_adjoint_of_forward(n, h, w, c, f, kh, kw, sh, sw, padding, seed):
    """Without bias, z is linear in x and in K: <z, dz> = <x, dx> = <K, dK>, and db sums dz."""
    rng = np.random.default_rng(seed)
    layer = built(Conv2D(f, (kh, kw), strides=(sh, sw), padding=padding), h, w, c)
    if layer is None:
        return
    x, kernel = rng.standard_normal((n, h, w, c)), rng.standard_normal((kh, kw, c, f))
    z = loops.conv2d_forward(x, kernel, np.zeros(f), layer.geometry)
    dz = rng.standard_normal(z.shape)
    dkernel, dbias, dx = loops.conv2d_backward(dz, x, kernel, layer.geometry)
    assert np.isclose(np.sum(z * dz), np.sum(x * dx))
    assert np.isclose(np.sum(z * dz), np.sum(kernel * dkernel))
    np.testing.assert_allclose(dbias, dz.sum(axis=(0, 1, 2)))


@pytest.mark.pool
@settings(max_examples=50, deadline=None)
@given(**window_cases)
def test_maxpool_loops_equal_reference_and_numba(n, h, w, c, kh, kw, sh, sw, padding, seed):
    rng = np.random.default_rng(seed)
    layer = built(MaxPooling2D((kh, kw), strides=(sh, sw), padding=padding), h, w, c)
    if layer is None:
        return
    # Small integers make ties, which must go to the same (first) input on every path.
    x = rng.integers(-3, 3, (n, h, w, c)).astype(np.float32)
    args = ((kh, kw), (sh, sw), layer.pads)
    y, argmax = loops.maxpool_forward(x, args)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = loops.maxpool_backward(dy, argmax, x.shape, args)
    for module in (reference, cpu):
        y_other, argmax_other = module.maxpool_forward(x, args)
        np.testing.assert_array_equal(y, y_other)
        np.testing.assert_array_equal(argmax, argmax_other)
        np.testing.assert_allclose(dx, module.maxpool_backward(dy, argmax_other, x.shape, args), atol=1e-6)


@pytest.mark.pool
def test_maxpool_loops_route_each_window_to_its_maximum():
    x = np.array([[1., 5., 2.], [0., 5., 7.], [3., -1., 4.]]).reshape(1, 3, 3, 1)
    y, argmax = loops.maxpool_forward(x, ((2, 2), (1, 1), (0, 0, 0, 0)))
    assert y[0, :, :, 0].tolist() == [[5, 7], [5, 7]]
    assert argmax[0, :, :, 0].tolist() == [[1, 3], [1, 1]]  # the tie of 5s goes to the first, (0, 1)
    dx = loops.maxpool_backward(np.ones((1, 2, 2, 1)), argmax, x.shape, ((2, 2), (1, 1), (0, 0, 0, 0)))
    assert dx[0, :, :, 0].tolist() == [[0, 1, 0], [0, 1, 2], [0, 0, 0]]  # the 7 won two windows


def test_switch_runs_the_layers_on_the_loop_kernels(rng):
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    conv, pool = Conv2D(3, 3, padding="same", algorithm="winograd"), MaxPooling2D(3, strides=2, padding="same")
    fast_y = pool.forward(conv.forward(x))
    assert conv.cache[0] == "winograd"
    dy = rng.standard_normal(fast_y.shape).astype(np.float32)
    fast_dx = conv.backward(pool.backward(dy))
    fast_dkernel = conv.grads["kernel"]
    with kernels.loop_kernels():
        assert kernels.using_loop_kernels() and not kernels.using_reference_kernels()
        y = pool.forward(conv.forward(x))
        assert conv.cache[0] == "loops"
        dx = conv.backward(pool.backward(dy))
    assert not kernels.using_loop_kernels()
    np.testing.assert_allclose(y, fast_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, fast_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.grads["kernel"], fast_dkernel, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make_layer", [lambda: Conv2D(3, (3, 2), strides=(2, 1), padding="same"),
                                        lambda: MaxPooling2D((3, 3), strides=(2, 2), padding="same")],
                         ids=["conv", "maxpool"])
def test_gradcheck_on_the_loop_kernels(make_layer, rng, float64):
    x = rng.standard_normal((2, 7, 5, 2))
    with kernels.loop_kernels():
        report = gradcheck.check_layer(make_layer(), x)
    assert report.passed(), str(report)


def run_with_environment(value: str) -> subprocess.CompletedProcess:
    code = "from tinyconv import kernels; print(kernels.using_loop_kernels())"
    environment = {**os.environ, "TINYCONV_KERNELS": value, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)


def test_environment_variable_switches_the_loop_kernels_on():
    assert run_with_environment("loops").stdout.strip() == "True"
    failed = run_with_environment("loop")
    assert failed.returncode != 0 and "TINYCONV_KERNELS must be one of" in failed.stderr
