"""ImageDataGenerator and the affine warp, against scipy.ndimage and Keras's documented behaviour."""
import json

import numpy as np
import pytest
from scipy import ndimage, stats

from tinyconv import random as tc_random
from tinyconv.data import ImageDataGenerator
from tinyconv.kernels import cpu, reference

pytestmark = pytest.mark.augment

SEED_PARAMS = dict(rotation_range=10, zoom_range=[0.9, 1.1], width_shift_range=0.1, height_shift_range=0.1,
                   shear_range=0.1, horizontal_flip=True)


def keras_matrix(p, h, w):
    """Keras's (x, y) matrix with the true image centre, built independently of tinyconv."""
    t, s = np.deg2rad(p["theta"]), np.deg2rad(p["shear"])
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, p["tx"]], [0, 1, p["ty"]], [0, 0, 1]])
    shear = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    zoom = np.array([[p["zx"], 0, 0], [0, p["zy"], 0], [0, 0, 1]])
    m = rotation @ shift @ shear @ zoom
    ox, oy = w / 2 - 0.5, h / 2 - 0.5
    m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    m[:, [0, 1]] = m[:, [1, 0]]  # Keras's swap into (row, col) order
    m[[0, 1]] = m[[1, 0]]
    return m


def scipy_transform(x, p, mode="nearest", cval=0.0):
    """Keras's apply_transform: scipy affine_transform per channel, then the flips."""
    m = keras_matrix(p, x.shape[0], x.shape[1])
    out = np.stack([ndimage.affine_transform(x[..., c].astype(np.float64), m[:2, :2], m[:2, 2], order=1,
                                             mode=mode, cval=cval) for c in range(x.shape[-1])], axis=-1)
    if p["flip_horizontal"]:
        out = out[:, ::-1]
    if p["flip_vertical"]:
        out = out[::-1]
    return out


def random_params(rng, h, w):
    return {"theta": rng.uniform(-40, 40), "tx": rng.uniform(-0.2, 0.2) * h, "ty": rng.uniform(-0.2, 0.2) * w,
            "shear": rng.uniform(-20, 20), "zx": rng.uniform(0.7, 1.3), "zy": rng.uniform(0.7, 1.3),
            "flip_horizontal": bool(rng.random() < 0.5), "flip_vertical": bool(rng.random() < 0.5)}


@pytest.mark.parametrize("shape", [(16, 16, 1), (16, 16, 3), (12, 20, 3), (21, 9, 1)])
@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
def test_apply_transform_equals_scipy(shape, fill_mode):
    rng = np.random.default_rng(hash((shape, fill_mode)) % 2 ** 32)
    gen = ImageDataGenerator(fill_mode=fill_mode, cval=0.3)
    for _ in range(5):
        x = rng.random(shape).astype(np.float32)
        p = random_params(rng, *shape[:2])
        out = gen.apply_transform(x, p)
        assert out.dtype == np.float32 and out.shape == shape
        np.testing.assert_allclose(out, scipy_transform(x, p, fill_mode, 0.3), atol=1e-5)


def test_identity_parameters_return_input_exactly():
    x = np.random.default_rng(0).random((13, 17, 3)).astype(np.float32)
    gen = ImageDataGenerator(**SEED_PARAMS)
    identity = {"theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1,
                "flip_horizontal": False, "flip_vertical": False}
    assert np.array_equal(gen.apply_transform(x, identity), x)
    assert np.array_equal(gen.apply_transform(x, {}), x)


def test_two_horizontal_flips_are_the_identity():
    x = np.random.default_rng(1).random((10, 15, 3)).astype(np.float32)
    gen = ImageDataGenerator()
    flip = {"flip_horizontal": True}
    once = gen.apply_transform(x, flip)
    assert np.array_equal(once, x[:, ::-1])
    assert np.array_equal(gen.apply_transform(once, flip), x)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
@pytest.mark.parametrize("shape", [(6, 11, 14, 3), (3, 210, 220, 1)])  # the serial and the parallel path
def test_numba_warp_equals_reference_warp(fill_mode, shape):
    rng = np.random.default_rng(2)
    n = shape[0]
    x = rng.random(shape).astype(np.float32)
    transforms = np.concatenate([rng.normal(0, 1.2, (n, 2, 2)), rng.normal(0, 6, (n, 2, 1))], axis=2)
    fast = cpu.affine_warp(x, transforms, fill_mode, -0.5)
    slow = reference.affine_warp(x, transforms, fill_mode, -0.5)
    assert fast.dtype == slow.dtype == np.float32
    np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_unknown_fill_mode_is_rejected():
    with pytest.raises(ValueError, match="fill_mode"):
        ImageDataGenerator(fill_mode="mirror")
    with pytest.raises(ValueError, match="fill_mode"):
        reference.affine_warp(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 2, 3)), "mirror")


def test_zoom_range_forms():
    assert ImageDataGenerator(zoom_range=0.2).zoom_range == pytest.approx([0.8, 1.2])
    assert ImageDataGenerator(zoom_range=[0.9, 1.1]).zoom_range == [0.9, 1.1]
    with pytest.raises(ValueError, match="zoom_range"):
        ImageDataGenerator(zoom_range=[0.9, 1.0, 1.1])


def test_draws_follow_the_documented_distributions():
    gen = ImageDataGenerator(**SEED_PARAMS)
    h, w = 32, 40
    draws = [gen.get_random_transform((h, w, 3), seed=k) for k in range(2000)]
    column = {key: np.array([d[key] for d in draws], dtype=float) for key in draws[0]}
    assert set(column) == {"theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical"}
    # each continuous draw is uniform on its documented interval (Kolmogorov-Smirnov)
    for key, (lo, hi) in {"theta": (-10, 10), "tx": (-0.1 * h, 0.1 * h), "ty": (-0.1 * w, 0.1 * w),
                          "shear": (-0.1, 0.1), "zx": (0.9, 1.1), "zy": (0.9, 1.1)}.items():
        assert lo <= column[key].min() and column[key].max() <= hi, key
        assert stats.kstest(column[key], stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3, key
    assert abs(np.corrcoef(column["zx"], column["zy"])[0, 1]) < 0.1  # drawn independently
    assert 0.45 < column["flip_horizontal"].mean() < 0.55
    assert column["flip_vertical"].sum() == 0


def test_integer_and_list_shift_ranges_follow_keras():
    gen = ImageDataGenerator(width_shift_range=3, height_shift_range=[2.0, 5.0])
    draws = [gen.get_random_transform((20, 20, 1), seed=k) for k in range(400)]
    assert {d["ty"] for d in draws} == {-2.0, -1.0, 0.0, 1.0, 2.0}  # integers in (-3, 3)
    assert {d["tx"] for d in draws} == {-5.0, -2.0, 2.0, 5.0}


def test_random_transform_is_deterministic_by_seed_and_uses_the_augment_generator():
    gen = ImageDataGenerator(**SEED_PARAMS)
    x = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
    assert np.array_equal(gen.random_transform(x, seed=5), gen.random_transform(x, seed=5))
    tc_random.set_seed(7)
    first = gen.random_transform(x)
    tc_random.set_seed(7)
    assert np.array_equal(gen.random_transform(x), first)


def test_fit_and_standardize_give_zero_mean_unit_std_per_channel():
    rng = np.random.default_rng(4)
    x = (rng.random((64, 8, 8, 3)) * [1.0, 3.0, 0.5] + [0.2, -1.0, 5.0]).astype(np.float32)
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    gen.fit(x)
    assert gen.mean.shape == gen.std.shape == (1, 1, 3)
    z = gen.standardize(x)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    np.testing.assert_allclose(gen.mean.ravel(), x.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-6)
    assert not np.shares_memory(z, x) and x.max() > 1.5  # the input is left alone


def test_standardize_order_follows_keras():
    x = np.random.default_rng(5).random((4, 5, 6, 2)).astype(np.float32)
    gen = ImageDataGenerator(rescale=2.0, samplewise_center=True, samplewise_std_normalization=True,
                             featurewise_center=True, featurewise_std_normalization=True)
    gen.mean, gen.std = np.array([[[0.1, -0.2]]]), np.array([[[2.0, 0.5]]])
    expected = x.astype(np.float64) * 2.0
    expected -= expected.mean(axis=(1, 2, 3), keepdims=True)
    expected /= expected.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    expected = (expected - gen.mean) / (gen.std + 1e-6)
    np.testing.assert_allclose(gen.standardize(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gen.standardize(x[1]), expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 2), (2,), (6, 2), (5, 6, 2)])
def test_featurewise_statistics_of_any_broadcastable_shape(shape):
    """Per-channel, per-column or per-pixel statistics set by hand all broadcast as NumPy would."""
    rng = np.random.default_rng(7)
    x = rng.random((3, 5, 6, 2)).astype(np.float32)
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    gen.mean, gen.std = rng.standard_normal(shape), rng.random(shape) + 0.5
    expected = (x.astype(np.float64) - gen.mean) / (gen.std + 1e-6)
    np.testing.assert_allclose(gen.standardize(x), expected, rtol=1e-5, atol=1e-5)


def test_featurewise_without_fit_warns():
    gen = ImageDataGenerator(featurewise_center=True)
    with pytest.warns(UserWarning, match="fit"):
        gen.standardize(np.zeros((2, 2, 1), np.float32))


def test_fit_with_rescale_matches_rescaled_statistics():
    x = np.random.default_rng(6).integers(0, 256, (20, 6, 6, 3)).astype(np.uint8)
    gen = ImageDataGenerator(rescale=1 / 255, featurewise_center=True, featurewise_std_normalization=True)
    gen.fit(x)
    np.testing.assert_allclose(gen.mean.ravel(), (x / 255).mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(gen.std.ravel(), (x / 255).std(axis=(0, 1, 2)), rtol=1e-6)


def indexed_images(n, h=4, w=5):
    """Image i is constant i: a batch tells which samples it holds, even after augmentation."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, h, w, 2)).copy()


def test_flow_batches_cover_every_sample_once_per_epoch():
    n, batch = 50, 16
    x, y = indexed_images(n), np.arange(n)[:, None] % 2
    it = ImageDataGenerator(**SEED_PARAMS).flow(x, y, batch_size=batch, seed=0)
    assert len(it) == 4
    epochs = []
    for _ in range(2):
        seen = []
        for b in range(len(it)):
            xb, yb = next(it)
            assert xb.dtype == np.float32 and yb.dtype == np.float32 and xb.flags["C_CONTIGUOUS"]
            assert xb.shape == ((batch, 4, 5, 2) if b < 3 else (2, 4, 5, 2))
            ids = xb[:, 0, 0, 0].round().astype(int)
            np.testing.assert_array_equal(yb[:, 0], ids % 2)
            seen.extend(ids)
        assert sorted(seen) == list(range(n))
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a new permutation each epoch


def test_flow_is_deterministic_by_seed_and_resumes_from_its_state():
    x = np.random.default_rng(7).random((40, 8, 8, 3)).astype(np.float32)
    y = np.zeros((40, 2))
    gen = ImageDataGenerator(**SEED_PARAMS)
    a, b = gen.flow(x, y, batch_size=8, seed=3), gen.flow(x, y, batch_size=8, seed=3)
    batches = [next(a)[0] for _ in range(12)]  # crosses an epoch boundary
    for expected in batches:
        assert np.array_equal(next(b)[0], expected)
    c = gen.flow(x, y, batch_size=8, seed=4)
    assert not np.array_equal(next(c)[0], batches[0])

    resumed = gen.flow(x, y, batch_size=8, seed=99)
    state = json.loads(json.dumps(a.get_state()))
    resumed.set_state(state)
    a_next = [next(a)[0] for _ in range(6)]
    for expected in a_next:
        assert np.array_equal(next(resumed)[0], expected)

    at_epoch = gen.flow(x, y, batch_size=8, seed=3)
    at_epoch.set_epoch(2)
    fresh = gen.flow(x, y, batch_size=8, seed=3)
    for _ in range(2 * len(fresh)):
        next(fresh)
    assert np.array_equal(next(at_epoch)[0], next(fresh)[0])


def test_flow_without_labels_and_without_shuffle():
    x = indexed_images(10)
    it = ImageDataGenerator().flow(x, batch_size=4, shuffle=False)
    first = next(it)
    assert isinstance(first, np.ndarray)
    np.testing.assert_array_equal(first[:, 0, 0, 0], [0, 1, 2, 3])


def test_flow_rejects_bad_input():
    gen = ImageDataGenerator()
    with pytest.raises(ValueError, match="length"):
        gen.flow(np.zeros((4, 2, 2, 1)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        gen.flow(np.zeros((4, 2, 2)), None)
    with pytest.raises(ValueError, match="batch_size"):
        gen.flow(np.zeros((4, 2, 2, 1)), batch_size=0)


def test_plot_augmentations_writes_a_png(tmp_path):
    from tinyconv.diagnostics.plots import plot_augmentations

    image = np.random.default_rng(8).random((24, 24, 3)).astype(np.float32)
    path = plot_augmentations(ImageDataGenerator(**SEED_PARAMS), image, tmp_path / "aug.png", n=8)
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
