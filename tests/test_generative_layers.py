"""The layers a generator needs: Conv2DTranspose, UpSampling2D, Reshape and tanh, against direct
definitions written with loops, against Keras's output sizes, and by float64 gradient checks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyconv import Model, kernels
from tinyconv.diagnostics import gradcheck
from tinyconv.layers import Activation, Conv2D, Conv2DTranspose, Dense, Input, Reshape, Tanh, UpSampling2D

pytestmark = pytest.mark.generative


def keras_transpose_length(n, k, s, padding):
    """Keras's deconv_output_length (no output_padding, dilation 1)."""
    return n * s + max(k - s, 0) if padding == "valid" else n * s


def direct_transposed_convolution(x, kernel, bias, strides, padding):
    """The definition: every input pixel paints kernel-weighted copies of itself onto the output.

    Painted onto an uncropped canvas, then cropped by the padding of the Conv2D whose input
    gradient this is (pad top/left; the rest falls off the bottom/right)."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    sh, sw = strides
    oh, ow = keras_transpose_length(h, kh, sh, padding), keras_transpose_length(w, kw, sw, padding)
    top = left = 0
    if padding == "same":
        top, left = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
    canvas = np.zeros((n, (h - 1) * sh + kh + top, (w - 1) * sw + kw + left, f))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for e in range(kw):
                        for o in range(f):
                            for ch in range(c):
                                canvas[b, i * sh + a, j * sw + e, o] += x[b, i, j, ch] * kernel[a, e, o, ch]
    canvas = np.pad(canvas, ((0, 0), (0, max(oh + top - canvas.shape[1], 0)),
                             (0, max(ow + left - canvas.shape[2], 0)), (0, 0)))
    return canvas[:, top:top + oh, left:left + ow, :] + bias


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 3),
       f=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]), reference=st.booleans(),
       seed=st.integers(0, 1000))
def test_conv_transpose_forward_equals_painting_loops(n, h, w, c, f, kh, kw, sh, sw, padding, reference, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    layer = Conv2DTranspose(f, (kh, kw), strides=(sh, sw), padding=padding)
    layer.build((h, w, c))
    kernel, bias = rng.standard_normal((kh, kw, f, c)), rng.standard_normal(f)
    layer.set_weights([kernel, bias])
    assert layer.output_shape == (keras_transpose_length(h, kh, sh, padding),
                                  keras_transpose_length(w, kw, sw, padding), f)
    with kernels.reference_kernels(reference):
        y = layer.forward(x.astype(np.float32))
    expected = direct_transposed_convolution(x, kernel, bias, (sh, sw), padding)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size, strides, padding", [((3, 3), (2, 2), "same"), ((4, 3), (2, 3), "valid"),
                                                            ((2, 2), (3, 3), "valid"), ((5, 5), (1, 1), "same")])
def test_conv_transpose_is_the_adjoint_of_conv2d(kernel_size, strides, padding, rng):
    """<conv(u), v> = <u, conv_transpose(v)> with one kernel: the two layers are a matrix and its transpose."""
    small = Conv2DTranspose(2, kernel_size, strides=strides, padding=padding, use_bias=False)
    small.build((4, 5, 3))
    big_shape = small.output_shape
    conv = Conv2D(3, kernel_size, strides=strides, padding=padding, use_bias=False, algorithm="im2col")
    conv.build(big_shape)
    assert conv.output_shape == (4, 5, 3)
    kernel = rng.standard_normal((*kernel_size, 2, 3))
    small.set_weights([kernel])
    conv.set_weights([kernel])
    u = rng.standard_normal((2, *big_shape))
    v = rng.standard_normal((2, 4, 5, 3))
    lhs = np.sum(conv.forward(u) * v)
    rhs = np.sum(u * small.forward(v))
    assert abs(lhs - rhs) <= 1e-9 * (abs(lhs) + abs(rhs))


def test_conv_transpose_parameters_and_sizes_as_keras():
    inputs = Input((7, 7, 16))
    x = Conv2DTranspose(8, 5, strides=2, padding="same")(inputs)
    y = Conv2DTranspose(4, (3, 2), strides=(3, 1), use_bias=False)(x)
    model = Model(inputs, y)
    assert x.shape == (None, 14, 14, 8) and y.shape == (None, 42, 15, 4)
    assert model.count_params() == (5 * 5 * 8 * 16 + 8) + 3 * 2 * 4 * 8
    assert model.layers[1].params["kernel"].shape == (5, 5, 8, 16)
    assert model.layers[1].name == "conv2d_transpose"


@pytest.mark.parametrize("size", [(2, 2), (3, 1), 2])
def test_upsampling_repeats_each_pixel_and_sums_back(size, rng):
    layer = UpSampling2D(size)
    x = rng.standard_normal((2, 3, 4, 5))
    y = layer.forward(x)
    sh, sw = (size, size) if isinstance(size, int) else size
    block = np.ones((1, sh, sw, 1))
    np.testing.assert_array_equal(y, np.kron(x, block))
    dy = rng.standard_normal(y.shape)
    expected = np.zeros_like(x)
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            expected[:, i // sh, j // sw] += dy[:, i, j]
    np.testing.assert_allclose(layer.backward(dy), expected, rtol=1e-12)


def test_reshape_infers_one_axis_and_round_trips(rng):
    layer = Reshape((4, -1, 2))
    x = rng.standard_normal((3, 24))
    y = layer.forward(x)
    assert layer.output_shape == (4, 3, 2)
    np.testing.assert_array_equal(y, x.reshape(3, 4, 3, 2))
    np.testing.assert_array_equal(layer.backward(y), x)


def test_tanh_layer_and_activation_match_numpy(rng):
    x = rng.standard_normal((2, 5)) * 3
    np.testing.assert_allclose(Tanh().forward(x), np.tanh(x), rtol=1e-15)
    np.testing.assert_allclose(Activation("tanh").forward(x), np.tanh(x), rtol=1e-15)
    dense = Dense(3, activation="tanh")
    dense.build((5,))
    np.testing.assert_allclose(dense.forward(x), np.tanh(x @ dense.params["kernel"]), rtol=1e-6)


GRADCHECKED = {
    "transpose_same_stride2": (lambda: Conv2DTranspose(3, 3, strides=2, padding="same"), (2, 4, 3, 2)),
    "transpose_valid_k4_s2": (lambda: Conv2DTranspose(2, 4, strides=2), (2, 3, 3, 3)),
    "transpose_valid_k2_s3_no_bias": (lambda: Conv2DTranspose(2, 2, strides=3, use_bias=False), (1, 3, 2, 2)),
    "transpose_same_nonsquare_tanh": (lambda: Conv2DTranspose(2, (3, 2), strides=(1, 2), padding="same",
                                                              activation="tanh"), (2, 3, 3, 2)),
    "upsampling": (lambda: UpSampling2D((2, 3)), (2, 3, 2, 2)),
    "reshape": (lambda: Reshape((2, 2, -1)), (2, 12)),
    "tanh": (lambda: Tanh(), (2, 3, 3, 2)),
}


@pytest.mark.gradcheck
@pytest.mark.parametrize("name", list(GRADCHECKED))
def test_gradients(name, rng, float64, device):
    make, shape = GRADCHECKED[name]
    report = gradcheck.check_layer(make(), rng.standard_normal(shape))
    assert report.max_rel_error < 1e-6 and report.kinks == 0, str(report)


@pytest.mark.parametrize("make, words", [
    (lambda: Conv2DTranspose(0, 3), "filters"), (lambda: Conv2DTranspose(2, 3, padding="full"), "padding"),
    (lambda: UpSampling2D(interpolation="bilinear"), "interpolation"), (lambda: UpSampling2D(0), "size"),
    (lambda: Reshape((2, -1, -1)), "target_shape"), (lambda: Reshape((0, 3)), "target_shape"),
    (lambda: Reshape("4x4"), "target_shape")])
def test_constructor_errors_name_the_argument(make, words):
    with pytest.raises((ValueError, TypeError), match=words):
        make()


def test_reshape_to_an_impossible_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        Reshape((4, 2))(Input((2, 3)))
    with pytest.raises(ValueError, match="height, width, channels"):
        UpSampling2D()(Input((6,)))


@pytest.mark.parametrize("target, input_shape", [((2, 2), (8,)), ((3, -1), (8,)), ((4, 4, 2), (4, 4, 3)),
                                                  ((2, 3), (2, 2))])
def test_reshape_to_another_number_of_values_is_refused_when_built(target, input_shape):
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape(target)(Input(input_shape))
