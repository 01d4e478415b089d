"""Conv2D against a direct nested-loop convolution, and Keras's output-size and padding rules."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyconv import kernels
from tinyconv.layers import Conv2D, Input, MaxPooling2D

pytestmark = pytest.mark.conv


def direct_convolution(x, kernel, bias, strides, padding):
    """The definition, written as plainly as possible: pad, then slide the window with loops."""
    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    sh, sw = strides
    if padding == "same":
        ph = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
        pw = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
        top, left = ph // 2, pw // 2
        x = np.pad(x, ((0, 0), (top, ph - top), (left, pw - left), (0, 0)))
    oh = (x.shape[1] - kh) // sh + 1
    ow = (x.shape[2] - kw) // sw + 1
    y = np.zeros((n, oh, ow, f))
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                for o in range(f):
                    total = bias[o]
                    for i in range(kh):
                        for j in range(kw):
                            for ch in range(c):
                                total += x[b, r * sh + i, q * sw + j, ch] * kernel[i, j, ch, o]
                    y[b, r, q, o] = total
    return y


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(3, 8), w=st.integers(3, 8), c=st.integers(1, 3),
       f=st.integers(1, 3), kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3),
       sw=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]), seed=st.integers(0, 1000))
def test_forward_equals_nested_loops(n, h, w, c, f, kh, kw, sh, sw, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    layer = Conv2D(f, (kh, kw), strides=(sh, sw), padding=padding)
    layer.build((h, w, c))
    kernel, bias = rng.standard_normal((kh, kw, c, f)), rng.standard_normal(f)
    layer.set_weights([kernel, bias])
    expected = direct_convolution(x, kernel, bias, (sh, sw), padding)
    np.testing.assert_allclose(layer.forward(x.astype(np.float32)), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(3, 11), w=st.integers(3, 11), c=st.integers(1, 4),
       f=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]), use_bias=st.booleans(),
       algorithm=st.sampled_from(["winograd", "winograd_6x6", "winograd_2x2"]), reference_kernels=st.booleans(),
       seed=st.integers(0, 1000))
def test_winograd_forward_equals_nested_loops(n, h, w, c, f, padding, use_bias, algorithm, reference_kernels,
                                              seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    layer = Conv2D(f, (3, 3), padding=padding, use_bias=use_bias, algorithm=algorithm)
    layer.build((h, w, c))
    kernel, bias = rng.standard_normal((3, 3, c, f)), rng.standard_normal(f) * use_bias
    layer.set_weights([kernel, bias] if use_bias else [kernel])
    expected = direct_convolution(x, kernel, bias, (1, 1), padding)
    with kernels.reference_kernels(reference_kernels):
        y = layer.forward(x.astype(np.float32))
    assert layer.cache[0] == algorithm
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_auto_algorithm_takes_winograd_for_wide_3x3_stride_1_layers(rng):
    cases = [(Conv2D(4, 3, padding="same"), 32, "winograd"), (Conv2D(4, 3, padding="same"), 3, "im2col"),
             (Conv2D(4, 3, strides=2), 32, "im2col"), (Conv2D(4, 5), 32, "im2col"),
             (Conv2D(4, 3, algorithm="im2col"), 32, "im2col"), (Conv2D(4, 3, algorithm="winograd"), 3, "winograd"),
             (Conv2D(4, 3, algorithm="winograd_2x2"), 3, "winograd_2x2")]
    for layer, channels, expected in cases:
        layer.build((8, 8, channels))
        layer.forward(rng.standard_normal((1, 8, 8, channels)).astype(np.float32))
        assert layer.cache[0] == expected, (layer, channels)


@pytest.mark.parametrize("size, padding, expected", [
    (8, "same", "winograd"), (16, "same", "winograd"), (32, "same", "winograd"), (24, "same", "winograd_6x6"),
    (48, "same", "winograd_6x6"), (20, "valid", "winograd_6x6"), (64, "same", "winograd_6x6")])
def test_auto_algorithm_takes_the_tile_with_the_fewest_products(size, padding, expected, rng):
    """Products a*a per tile, tiles past the edge counted whole, counted by hand: 8 px, F(4x4)
    36 x 2 x 2 = 144 against F(6x6) 64 x 2 x 2 = 256; 16 px 36 x 16 = 576 = 64 x 9 and 32 px
    36 x 64 = 2304 = 64 x 36, ties, F(4x4); 24 px 1296 against 1024; 48 px 5184 against 4096;
    20 px valid (18 out) 36 x 25 = 900 against 64 x 9 = 576; 64 px 9216 against 64 x 121 = 7744."""
    layer = Conv2D(2, 3, padding=padding)
    layer.build((size, size, 32))
    layer.forward(rng.standard_normal((1, size, size, 32)).astype(np.float32))
    assert layer.cache[0] == expected


@pytest.mark.parametrize("algorithm", ["winograd", "winograd_6x6", "winograd_2x2"])
def test_winograd_backward_equals_im2col_backward(algorithm, rng):
    x = rng.standard_normal((2, 9, 7, 16)).astype(np.float32)
    dy = rng.standard_normal((2, 9, 7, 5)).astype(np.float32)
    weights = [rng.standard_normal((3, 3, 16, 5)), np.arange(5.0)]
    results = []
    for name in ("im2col", algorithm):
        layer = Conv2D(5, 3, padding="same", algorithm=name)
        layer.build((9, 7, 16))
        layer.set_weights(weights)
        layer.forward(x)
        results.append((layer, layer.backward(dy)))
    (im2col, dx_im2col), (winograd, dx_winograd) = results
    np.testing.assert_allclose(dx_winograd, dx_im2col, rtol=1e-4, atol=1e-4)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(winograd.grads[name], im2col.grads[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("blocks", ["one image per block, 3 lanes", "one block"])
@pytest.mark.parametrize("reference_kernels", [False, True], ids=["numba", "reference"])
@pytest.mark.usefixtures("float64")
def test_winograd_in_blocks_of_images_equals_im2col(blocks, reference_kernels, rng, monkeypatch):
    """Winograd runs over blocks of images, and adds the kernel gradient's parts in lanes of blocks:
    20 images one per block in lanes of 7, 7 and 6 blocks, or all in one block, against im2col, in
    float64 so that only a wrong slice or sum could differ."""
    from tinyconv.layers import winograd
    if blocks == "one block":
        monkeypatch.setattr(winograd, "BLOCK_BYTES", 1 << 40)
        monkeypatch.setattr(winograd, "SUM_LANES", 1)
        assert winograd.image_blocks(20, 1000) == [slice(0, 20)]
    else:
        monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)
        monkeypatch.setattr(winograd, "SUM_LANES", 3)
        assert winograd.image_blocks(20, 1000) == [slice(i, i + 1) for i in range(20)]
        assert winograd.sum_lanes(20, 1000) == [range(0, 7), range(7, 14), range(14, 20)]
    x = rng.standard_normal((20, 9, 7, 4))
    dy = rng.standard_normal((20, 9, 7, 5))
    weights = [rng.standard_normal((3, 3, 4, 5)), rng.standard_normal(5)]
    results = []
    with kernels.reference_kernels(reference_kernels):
        for name in ("im2col", "winograd"):
            layer = Conv2D(5, 3, padding="same", algorithm=name)
            layer.build((9, 7, 4))
            layer.set_weights(weights)
            y = layer.forward(x)
            results.append((y, layer.backward(dy), layer.grads["kernel"], layer.grads["bias"]))
    for winograd_result, im2col_result in zip(results[1], results[0]):
        np.testing.assert_allclose(winograd_result, im2col_result, rtol=1e-10, atol=1e-10)


def test_image_blocks_and_sum_lanes_follow_the_shapes(monkeypatch):
    """Blocks within BLOCK_BYTES (one image at least), as many as a multiple of SUM_LANES (the
    batch at most), sizes one apart at most, the longer first; lanes within SUM_LANES and
    PARTIAL_BYTES, cut the same way: counted by hand."""
    from tinyconv.layers import winograd
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 7000)
    monkeypatch.setattr(winograd, "SUM_LANES", 4)
    sizes = lambda blocks: [block.stop - block.start for block in blocks]
    assert winograd.image_blocks(20, 1000) == [slice(0, 5), slice(5, 10), slice(10, 15), slice(15, 20)]  # 7 fit: 3 -> 4
    assert sizes(winograd.image_blocks(22, 1000)) == [6, 6, 5, 5]
    assert sizes(winograd.image_blocks(30, 1000)) == [4, 4, 4, 4, 4, 4, 3, 3]  # 5 blocks -> 8
    assert winograd.image_blocks(3, 9000) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # none fits: one each
    monkeypatch.setattr(winograd, "PARTIAL_BYTES", 3000)
    assert winograd.sum_lanes(10, 1000) == [range(0, 4), range(4, 7), range(7, 10)]  # 3 partials fit
    assert winograd.sum_lanes(10, 100) == [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]
    assert winograd.sum_lanes(2, 100) == [range(0, 1), range(1, 2)]
    assert winograd.sum_lanes(5, 10 ** 6) == [range(0, 5)]


def test_winograd_needs_a_3x3_stride_1_kernel():
    with pytest.raises(ValueError, match=r"Winograd algorithm needs a 3x3 kernel with strides 1"):
        Conv2D(2, 3, strides=2, algorithm="winograd")
    with pytest.raises(ValueError, match=r"algorithm must be one of"):
        Conv2D(2, 3, algorithm="fft")


@pytest.mark.parametrize("n, k, s, padding, expected", [
    (32, 3, 1, "same", 32), (32, 3, 1, "valid", 30), (7, 3, 2, "same", 4), (7, 3, 2, "valid", 3),
    (8, 2, 2, "same", 4), (5, 4, 3, "valid", 1), (5, 4, 3, "same", 2), (9, 1, 3, "valid", 3),
])
def test_output_size_follows_keras(n, k, s, padding, expected):
    layer = Conv2D(2, (k, 1), strides=(s, 1), padding=padding)
    out = layer(Input((n, 4, 1)))
    assert out.shape == (None, expected, 4, 2)


def test_same_padding_puts_the_extra_pixel_bottom_right():
    # n=6, k=2, s=1: total padding 1, TensorFlow puts it at the bottom/right.
    layer = Conv2D(1, (2, 2), padding="same")
    layer.build((6, 6, 1))
    assert layer.pads == (0, 1, 0, 1)
    layer = Conv2D(1, (4, 4), strides=(2, 2), padding="same")
    layer.build((7, 7, 1))  # ceil(7/2)=4 outputs, total = 3*2 + 4 - 7 = 3 -> (1, 2)
    assert layer.pads == (1, 2, 1, 2)


def test_pooling_output_shapes():
    assert MaxPooling2D((2, 2))(Input((7, 6, 3))).shape == (None, 3, 3, 3)
    assert MaxPooling2D((2, 2), padding="same")(Input((7, 6, 3))).shape == (None, 4, 3, 3)
    assert MaxPooling2D((3, 3), strides=1)(Input((7, 6, 3))).shape == (None, 5, 4, 3)


def test_window_larger_than_input_is_refused():
    with pytest.raises(ValueError, match=r"5x5 window.*does not fit an input of 3x3"):
        Conv2D(1, 5)(Input((3, 3, 1)))
