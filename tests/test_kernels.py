"""The numba kernels equal the readable reference kernels on random shapes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyconv.kernels import cpu, loops, reference
from tinyconv.layers.winograd import F2X2_3X3, F4X4_3X3, F6X6_3X3

pytestmark = pytest.mark.kernels


@st.composite
def window_problems(draw):
    """A random NHWC batch with a window, strides and explicit padding that fit it."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kh, kw, kw))
    h = draw(st.integers(max(1, kh - pads[0] - pads[1]), 9))
    w = draw(st.integers(max(1, kw - pads[2] - pads[3]), 9))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((n, h, w, c)).astype(dtype)
    return x, (kh, kw), (sh, sw), pads


@settings(max_examples=60, deadline=None)
@given(window_problems())
def test_im2col_and_col2im_match_reference(problem):
    x, window, strides, pads = problem
    cols = cpu.im2col(x, (window, strides, pads))
    np.testing.assert_array_equal(cols, reference.im2col(x, (window, strides, pads)))
    upstream = np.random.default_rng(0).standard_normal(cols.shape).astype(x.dtype)
    np.testing.assert_allclose(cpu.col2im(upstream, x.shape, (window, strides, pads)),
                               reference.col2im(upstream, x.shape, (window, strides, pads)),
                               rtol=1e-5, atol=1e-5)


@st.composite
def winograd_problems(draw):
    """A random NHWC batch for a 3x3 stride-1 convolution, "valid" or "same", odd sizes included."""
    pads = draw(st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1)]))
    h, w = draw(st.integers(3 - 2 * pads[0], 9)), draw(st.integers(3 - 2 * pads[0], 9))
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    out_shape = (n, h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2, f)
    return x, pads, out_shape, rng


TILE_TRANSFORMS = [F2X2_3X3, F4X4_3X3, F6X6_3X3]


@pytest.mark.parametrize("module", [cpu, reference], ids=["numba", "reference"])
def test_winograd_transforms_write_into_the_block_they_are_given(module):
    """The layer passes a block of its own y and dx as ``out``: exactly that block gets the values
    a new array would hold, the images around it keep theirs (NaN here)."""
    rng = np.random.default_rng(3)
    transforms, pads, block = TILE_TRANSFORMS[-1], (1, 1, 1, 1), slice(2, 4)
    x_shape, out_shape = (2, 9, 7, 3), (2, 9, 7, 5)
    tiles = reference.winograd_tiles(9, 7, transforms.m)
    a = transforms.bt.shape[0]
    dv = rng.standard_normal((a * a, 2 * tiles[0] * tiles[1], 3))
    products = rng.standard_normal((a * a, 2 * tiles[0] * tiles[1], 5))
    bias = rng.standard_normal(5)
    for expected, write, shape in [
            (reference.winograd_input_transform_adjoint(dv, x_shape, pads, tiles, transforms.bt),
             lambda out: module.winograd_input_transform_adjoint(dv, x_shape, pads, tiles, transforms.bt, out), x_shape),
            (reference.winograd_output_transform(products, out_shape, bias, transforms.at),
             lambda out: module.winograd_output_transform(products, out_shape, bias, transforms.at, out), out_shape)]:
        whole = np.full((5, *shape[1:]), np.nan)
        assert write(whole[block]) is not None
        np.testing.assert_allclose(whole[block], expected, rtol=1e-12, atol=1e-12)
        assert np.isnan(whole[:2]).all() and np.isnan(whole[4:]).all()


@settings(max_examples=60, deadline=None)
@given(winograd_problems(), st.sampled_from(TILE_TRANSFORMS))
def test_winograd_transforms_match_reference(problem, transforms):
    x, pads, out_shape, rng = problem
    tiles = reference.winograd_tiles(out_shape[1], out_shape[2], transforms.m)
    bt, at = transforms.bt.astype(x.dtype), transforms.at.astype(x.dtype)
    v = cpu.winograd_input_transform(x, pads, tiles, bt)
    tol = dict(rtol=1e-5, atol=1e-4)  # F(4x4, 3x3)'s entries (up to 8) sum to values around 100
    np.testing.assert_allclose(v, reference.winograd_input_transform(x, pads, tiles, bt), **tol)
    dv = rng.standard_normal(v.shape).astype(x.dtype)
    np.testing.assert_allclose(cpu.winograd_input_transform_adjoint(dv, x.shape, pads, tiles, bt),
                               reference.winograd_input_transform_adjoint(dv, x.shape, pads, tiles, bt), **tol)
    m = rng.standard_normal((v.shape[0], v.shape[1], out_shape[3])).astype(x.dtype)
    bias = rng.standard_normal(out_shape[3]).astype(x.dtype)
    y = cpu.winograd_output_transform(m, out_shape, bias, at)
    np.testing.assert_allclose(y, reference.winograd_output_transform(m, out_shape, bias, at), **tol)
    dy = rng.standard_normal(out_shape).astype(x.dtype)
    np.testing.assert_allclose(cpu.winograd_output_transform_adjoint(dy, at),
                               reference.winograd_output_transform_adjoint(dy, at), **tol)


@pytest.mark.parametrize("transforms", TILE_TRANSFORMS, ids=lambda t: t.name)
@pytest.mark.parametrize("module", [reference, cpu], ids=["reference", "numba"])
def test_winograd_backward_transforms_are_adjoints(module, transforms, rng):
    """<T(a), b> == <a, T*(b)> for the input and output transforms, on partial tiles (7x6 output)."""
    x = rng.standard_normal((2, 7, 6, 3))
    pads, out_shape = (1, 1, 1, 1), (2, 7, 6, 4)
    tiles = reference.winograd_tiles(7, 6, transforms.m)
    v = module.winograd_input_transform(x, pads, tiles, transforms.bt)
    dv = rng.standard_normal(v.shape)
    assert np.sum(v * dv) == pytest.approx(
        np.sum(x * module.winograd_input_transform_adjoint(dv, x.shape, pads, tiles, transforms.bt)), rel=1e-12)
    m = rng.standard_normal((v.shape[0], v.shape[1], 4))
    dy = rng.standard_normal(out_shape)
    assert np.sum(module.winograd_output_transform(m, out_shape, 0.0, transforms.at) * dy) == pytest.approx(
        np.sum(m * module.winograd_output_transform_adjoint(dy, transforms.at)), rel=1e-12)


@pytest.mark.parametrize("transforms", TILE_TRANSFORMS, ids=lambda t: t.name)
@pytest.mark.parametrize("kind", ["input", "input adjoint", "output", "output adjoint"])
def test_winograd_transforms_carry_nan_and_inf_to_every_entry_they_reach(kind, transforms, rng):
    """The numba transforms drop the terms whose coefficient is 0 (cpu.py): a NaN or inf must still
    reach exactly the entries that a nonzero coefficient links it to, and the rest must be the
    transform of the data with those values set to 0. Where they reach is counted independently:
    the reference transform, with every coefficient made positive, of the places of the bad values."""
    pads, out_shape, x_shape = (1, 1, 1, 1), (2, 7, 6, 3), (2, 7, 6, 3)
    tiles = reference.winograd_tiles(7, 6, transforms.m)
    a = transforms.bt.shape[0]
    shapes = {"input": x_shape, "input adjoint": (a * a, 2 * tiles[0] * tiles[1], 3),
              "output": (a * a, 2 * tiles[0] * tiles[1], 3), "output adjoint": out_shape}

    def transform(module, data, bt, at):
        return {"input": lambda: module.winograd_input_transform(data, pads, tiles, bt),
                "input adjoint": lambda: module.winograd_input_transform_adjoint(data, x_shape, pads, tiles, bt),
                "output": lambda: module.winograd_output_transform(data, out_shape, 0.0, at),
                "output adjoint": lambda: module.winograd_output_transform_adjoint(data, at)}[kind]()

    data = rng.standard_normal(shapes[kind]).astype(np.float32)
    bad = np.zeros(data.shape, dtype=bool)
    bad.flat[rng.choice(data.size, 3, replace=False)] = True
    data_with_bad = np.where(bad, np.float32(np.nan), data)
    data_with_bad.flat[np.flatnonzero(bad)[0]] = np.inf
    got = transform(cpu, data_with_bad, transforms.bt.astype(np.float32), transforms.at.astype(np.float32))
    reach = transform(reference, bad.astype(np.float64), np.abs(transforms.bt), np.abs(transforms.at)) > 0
    assert reach.any() and not reach.all()  # a test of both parts
    np.testing.assert_array_equal(~np.isfinite(got), reach)
    finite = transform(reference, np.where(bad, 0, data).astype(np.float64), transforms.bt, transforms.at)
    np.testing.assert_allclose(got[~reach], finite[~reach], rtol=1e-5, atol=1e-4)


@pytest.mark.pool
@settings(max_examples=60, deadline=None)
@given(window_problems())
def test_maxpool_matches_reference(problem):
    x, window, strides, pads = problem
    y, argmax = cpu.maxpool_forward(x, (window, strides, pads))
    y_ref, argmax_ref = reference.maxpool_forward(x, (window, strides, pads))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    np.testing.assert_allclose(cpu.maxpool_backward(dy, argmax, x.shape, (window, strides, pads)),
                               reference.maxpool_backward(dy, argmax, x.shape, (window, strides, pads)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("module", [reference, cpu], ids=["reference", "numba"])
def test_col2im_is_the_adjoint_of_im2col(module, rng):
    """<im2col(x), c> == <x, col2im(c)> for every x and c: overlaps are summed, not overwritten."""
    x = rng.standard_normal((2, 7, 8, 3))
    window, strides, pads = (3, 2), (2, 1), (1, 1, 0, 1)
    cols = rng.standard_normal(module.im2col(x, (window, strides, pads)).shape)
    lhs = np.sum(module.im2col(x, (window, strides, pads)) * cols)
    rhs = np.sum(x * module.col2im(cols, x.shape, (window, strides, pads)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.pool
@pytest.mark.parametrize("module", [reference, cpu], ids=["reference", "numba"])
def test_maxpool_tie_goes_to_one_input_and_padding_never_wins(module):
    x = -np.ones((1, 3, 3, 1))  # all negative, all tied
    y, argmax = module.maxpool_forward(x, ((2, 2), (2, 2), (0, 1, 0, 1)))
    np.testing.assert_array_equal(y, -np.ones((1, 2, 2, 1)))  # padding (-inf) never wins
    dx = module.maxpool_backward(np.ones_like(y), argmax, x.shape, ((2, 2), (2, 2), (0, 1, 0, 1)))
    assert dx.sum() == 4  # each window routes its gradient to exactly one input
    assert dx.max() == 1


def loop_maxpool(x, window, strides, pads):
    """Max pooling by nested loops, the independent check: ``(y, argmax, winners)``.

    Each window is scanned in row-major order, padding skipped; the first maximum wins a tie, and
    a NaN beats every number (the first NaN wins), as ``np.max`` propagates it. ``winners`` maps
    each output index to the input index its gradient goes to.
    """
    (ph, pw), (sh, sw), (top, bottom, left, right) = window, strides, pads
    n, h, w, c = x.shape
    oh, ow = (h + top + bottom - ph) // sh + 1, (w + left + right - pw) // sw + 1
    y = np.full((n, oh, ow, c), -np.inf, dtype=x.dtype)
    argmax = np.zeros((n, oh, ow, c), dtype=np.int32)
    winners = {}
    for out in np.ndindex(n, oh, ow, c):
        b, r, q, ch = out
        for i in range(ph):
            for j in range(pw):
                row, col = r * sh + i - top, q * sw + j - left
                if not (0 <= row < h and 0 <= col < w):
                    continue
                v = x[b, row, col, ch]
                if out not in winners or (np.isnan(v) and not np.isnan(y[out])) or v > y[out]:
                    y[out], argmax[out], winners[out] = v, i * pw + j, (b, row, col, ch)
    return y, argmax, winners


# Overlapping windows (stride below the window), "same" padding, non-square windows and strides.
TIE_CASES = [((2, 6, 7, 3), (3, 3), (1, 1), (1, 1, 1, 1)),
             ((1, 7, 8, 2), (2, 3), (1, 2), (0, 1, 1, 1)),
             ((2, 6, 6, 2), (2, 2), (2, 2), (0, 0, 0, 0)),
             ((1, 5, 5, 1), (3, 2), (2, 1), (1, 1, 0, 1))]


@pytest.mark.pool
@pytest.mark.parametrize("module", [reference, loops, cpu], ids=["reference", "loops", "numba"])
@pytest.mark.parametrize("values", ["ties", "negative ties", "nan"])
@pytest.mark.parametrize("shape, window, strides, pads", TIE_CASES)
def test_maxpool_ties_and_nan_follow_window_order(module, values, shape, window, strides, pads):
    """Exact ties go to the first tied input in window order and a NaN wins its window (the first
    NaN of several), in both kernels; gradients are integers so that every sum is exact."""
    rng = np.random.default_rng(5)
    x = {"ties": rng.integers(0, 3, shape).astype(np.float64),
         "negative ties": -rng.integers(1, 3, shape).astype(np.float64),
         "nan": np.where(rng.random(shape) < 0.3, np.nan, rng.integers(0, 3, shape))}[values]
    y_loop, argmax_loop, winners = loop_maxpool(x, window, strides, pads)
    dy = rng.integers(1, 100, y_loop.shape).astype(np.float64)
    dx_loop = np.zeros_like(x)
    for out, winner in winners.items():
        dx_loop[winner] += dy[out]
    if values == "nan":  # the case is only a test when windows hold one NaN, and some several
        assert 0 < np.isnan(y_loop).sum() < y_loop.size
    y, argmax = module.maxpool_forward(x, (window, strides, pads))
    np.testing.assert_array_equal(y, y_loop)  # NaN equals NaN here
    np.testing.assert_array_equal(argmax, argmax_loop)
    np.testing.assert_array_equal(module.maxpool_backward(dy, argmax, x.shape, (window, strides, pads)), dx_loop)


@pytest.mark.pool
@pytest.mark.parametrize("module", [reference, loops, cpu], ids=["reference", "loops", "numba"])
def test_maxpool_nan_propagates_like_numpy_max(module):
    x = np.float32([[1, np.nan], [3, 2]]).reshape(1, 2, 2, 1)
    y, argmax = module.maxpool_forward(x, ((2, 2), (2, 2), (0, 0, 0, 0)))
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(np.max(x)) and argmax[0, 0, 0, 0] == 1


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), alpha=st.sampled_from([0.0, 0.3, 0.01]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 1000))
def test_leaky_relu_kernels_match_reference(shape, alpha, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0  # the kink itself takes the left derivative on both paths
    y = cpu.leaky_relu_forward(x, alpha)
    np.testing.assert_array_equal(y, reference.leaky_relu_forward(x, alpha))
    dy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(cpu.leaky_relu_backward(dy, y, alpha), reference.leaky_relu_backward(dy, y, alpha))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_adam_kernel_matches_reference(dtype, rtol, rng):
    arrays = [rng.standard_normal((5, 7)).astype(dtype) for _ in range(2)] + \
             [np.abs(rng.standard_normal((5, 7))).astype(dtype) * s for s in (0.1, 0.01)]
    fast = [a.copy() for a in arrays]
    slow = [a.copy() for a in arrays]
    for _ in range(3):
        cpu.adam_update(fast[0], fast[1], fast[2], fast[3], 1e-3, 0.9, 0.999, 1e-7)
        reference.adam_update(slow[0], slow[1], slow[2], slow[3], 1e-3, 0.9, 0.999, 1e-7)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=rtol)
