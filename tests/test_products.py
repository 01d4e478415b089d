"""The CPU's matrix products (``kernels/products.py``): numpy.matmul's values, and the same bits on
any number of threads, for every way a product is cut (rows, columns, split sums)."""
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyconv.kernels import products
from tinyconv.kernels.products import ProductPool, column_sums, cut, matmul, pieces

pytestmark = pytest.mark.kernels

POOLS = {threads: ProductPool(threads) for threads in (1, 2, 3, 5)}

# One shape per way of cutting: rows, columns, a split sum, a single call.
SHAPES = {
    "rows": ((3000, 27), (27, 64)),
    "columns": ((16, 512), (512, 4096)),
    "sum": ((8, 50000), (50000, 8)),
    "whole": ((8, 8), (8, 8)),
}


@pytest.mark.parametrize("kind", SHAPES)
def test_the_cases_cut_as_named(kind):
    """So that the cases below keep meaning what they say."""
    assert cut(*SHAPES[kind])[0] == kind


@pytest.mark.parametrize("a_shape, b_shape, kind", [
    ((27, 73728), (73728, 64), "sum"),  # first layer's dW at 48 px: rows would read dZ twice
    ((32, 18432), (18432, 128), "sum"),  # Dense forward: rows would read W twice
    ((32, 128), (128, 18432), "columns"),  # Dense dX: rows would read W twice
    ((73728, 27), (27, 64), "rows"),  # im2col forward
])
def test_the_cut_is_the_one_that_moves_the_fewest_elements(a_shape, b_shape, kind):
    """Counted by hand for the seed CNN's products at 48 px: e.g. the first, rows: 2 pieces x
    (73728 x 64) + 27 x 73728 = 11.4M elements; columns: 4 pieces x 27 x 73728 + 73728 x 64 = 12.7M;
    sum: 27 x 73728 + 73728 x 64 + 16 partials x 27 x 64 = 6.7M."""
    assert cut(a_shape, b_shape)[0] == kind


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_is_numpys_product_and_the_same_bits_on_any_thread_count(kind, dtype):
    """A cut that dropped or repeated a piece, or a sum added in another order per thread count,
    fails here."""
    rng = np.random.default_rng(0)
    a_shape, b_shape = SHAPES[kind]
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    results = [matmul(a, b, pool=pool) for pool in POOLS.values()]
    reference = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tolerance = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(results[0], reference, rtol=tolerance, atol=tolerance * np.sqrt(a_shape[-1]))
    assert results[0].dtype == dtype
    for result in results[1:]:
        assert np.array_equal(result, results[0])


@pytest.mark.parametrize("kind", SHAPES)
def test_matmul_adds_the_bias_to_every_row_once_whatever_the_cut(kind):
    """The bias goes in piece by piece (rows: each piece its rows; columns: each piece its slice
    of the bias; a split sum: once, after the partials): a piece that skipped it, took another
    slice or added it to every partial fails here."""
    rng = np.random.default_rng(1)
    a_shape, b_shape = SHAPES[kind]
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    bias = rng.standard_normal(b_shape[1]) * 100
    results = [matmul(a, b, bias, pool) for pool in POOLS.values()]
    np.testing.assert_allclose(results[0], np.matmul(a, b) + bias[None, :], rtol=1e-11, atol=1e-9)
    for result in results[1:]:
        assert np.array_equal(result, results[0])


@pytest.mark.parametrize("rows", [1, 5000, 70001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sums_are_the_sums_of_the_rows_and_the_same_bits_on_any_thread_count(rows, dtype):
    """One piece, a few, and a ragged last one; against math.fsum of each column in float64."""
    import math
    rng = np.random.default_rng(rows)
    a = rng.standard_normal((rows, 37)).astype(dtype) + 3
    results = [column_sums(a, pool) for pool in POOLS.values()]
    reference = np.array([math.fsum(column) for column in a.astype(np.float64).T])
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(results[0], reference, rtol=tolerance)
    assert results[0].dtype == dtype and results[0].shape == (37,)
    for result in results[1:]:
        assert np.array_equal(result, results[0])


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 700), k=st.integers(1, 900), n=st.integers(1, 300), transpose_a=st.booleans(),
       transpose_b=st.booleans(), threads=st.sampled_from([2, 3, 5]))
def test_matmul_of_any_shape_and_layout(m, k, n, transpose_a, transpose_b, threads):
    """Transposed views (the layers' X^T dZ and dZ W^T) and ragged last pieces."""
    rng = np.random.default_rng(m * k * n)
    a = rng.standard_normal((k, m)).T if transpose_a else rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T if transpose_b else rng.standard_normal((k, n))
    np.testing.assert_allclose(matmul(a, b, pool=POOLS[threads]), a @ b, rtol=1e-10, atol=1e-10 * np.sqrt(k))
    assert np.array_equal(matmul(a, b, pool=POOLS[threads]), matmul(a, b, pool=POOLS[1]))


@pytest.mark.parametrize("m, k, n, slices", [
    (64, 128, 128, 2), (128, 128, 128, 4), (100, 128, 100, 2), (128, 64, 64, 1), (4000, 300, 64, 1)])
@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "transposed views"])
def test_stacked_products_in_column_slices_equal_the_whole_product(m, k, n, slices, transposed, rng):
    """Winograd's stacks of products, cut into column slices where each slice's product then fits
    SMALL_PRODUCT (halved widths, a ragged last one) and whole where it cannot fit or need not;
    against float64 products, operands as contiguous arrays and as the transposed views that
    Winograd's backward passes."""
    width = n if slices == 1 else -(-n // slices // 16) * 16
    assert slices == 1 or m * k * width <= products.SMALL_PRODUCT < m * k * 2 * width
    a = rng.standard_normal((3, k, m) if transposed else (3, m, k)).astype(np.float32)
    b = rng.standard_normal((3, n, k) if transposed else (3, k, n)).astype(np.float32)
    if transposed:
        a, b = a.transpose(0, 2, 1), b.transpose(0, 2, 1)
    got = products.stacked_matmul(a, b)
    assert got.shape == (3, m, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.matmul(a.astype(np.float64), b.astype(np.float64)), rtol=1e-4,
                               atol=1e-4 * np.sqrt(k))


def test_pieces_depend_on_the_shape_only_and_cover_it():
    for length, flops, smallest in [(1, 10, 16), (1000, 3456, 16), (20000, 864, 1250), (36, 1 << 24, 1)]:
        cut = pieces(length, flops, smallest)
        assert cut[0][0] == 0 and cut[-1][1] == length
        assert all(stop == start for (_, stop), (start, _) in zip(cut, cut[1:]))
        assert all((stop - start) % smallest == 0 for start, stop in cut[:-1])


def test_a_slow_thread_only_takes_fewer_pieces():
    """A helper that stalls (its core taken by another program) does not change the result, and
    the caller carries on with the queue instead of waiting for it piece by piece."""
    pool = ProductPool(2)
    taken = {"caller": 0, "helper": 0}
    caller = threading.get_ident()
    stall = threading.Event()

    def piece():
        if threading.get_ident() == caller:
            taken["caller"] += 1
        else:
            taken["helper"] += 1
            stall.wait(0.2)

    pool.run([piece] * 40)
    assert taken["caller"] + taken["helper"] == 40
    assert taken["caller"] > taken["helper"]


def test_an_error_in_a_piece_reaches_the_caller_after_every_piece_returned():
    pool, done = ProductPool(3), []

    def fails():
        raise FloatingPointError("piece 3")

    work = [lambda: done.append(1)] * 3 + [fails] + [lambda: done.append(1)] * 3
    with pytest.raises(FloatingPointError, match="piece 3"):
        pool.run(work)
    assert len(done) == 6  # the other threads drained the queue


@pytest.mark.parametrize("environ, expected", [({"OPENBLAS_NUM_THREADS": "3"}, 3),
                                               ({"OMP_NUM_THREADS": "2,1"}, 2),
                                               ({"GOTO_NUM_THREADS": "4", "OMP_NUM_THREADS": "2"}, 4),
                                               ({"OPENBLAS_NUM_THREADS": "0"}, None), ({}, None)])
def test_the_pool_is_as_wide_as_the_user_asked_of_blas(environ, expected):
    cores = len(os.sched_getaffinity(0))
    assert products.default_threads(environ) == (expected or cores)
