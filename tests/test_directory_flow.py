"""flow_from_directory and the rest of ImageDataGenerator's Keras arguments, against Pillow, scipy
and the rules written out."""
import numpy as np
import pytest
from PIL import Image
from scipy.linalg import fractional_matrix_power

from tinyconv import Sequential
from tinyconv.layers import Dense, Flatten, Input
from tinyconv.preprocessing.image import ImageDataGenerator

pytestmark = pytest.mark.augment


def image_folders(root, counts, rng, size=(9, 7)):
    """root/<class>/<i>.png (and a sub-folder for the first class), random RGB pixels; returns them."""
    pixels = {}
    for name, count in counts.items():
        (root / name / "more").mkdir(parents=True)
        for i in range(count):
            array = rng.integers(0, 256, (*size, 3)).astype(np.uint8)
            relative = f"more/{i}.png" if (name == "cats" and i == 0) else f"{i:02d}.png"
            Image.fromarray(array).save(root / name / relative)
            pixels[f"{name}/{relative}"] = array
    (root / next(iter(counts)) / "notes.txt").write_text("not an image")
    return pixels


def test_flow_from_directory_reads_classes_files_and_labels_as_keras(tmp_path, rng, capsys):
    pixels = image_folders(tmp_path, {"cats": 3, "dogs": 2, "owls": 4}, rng)
    flow = ImageDataGenerator(rescale=1 / 255).flow_from_directory(tmp_path, target_size=(9, 7), batch_size=4,
                                                                   shuffle=False)
    assert capsys.readouterr().out == "Found 9 images belonging to 3 classes.\n"
    assert flow.class_indices == {"cats": 0, "dogs": 1, "owls": 2}
    assert flow.filenames[:3] == ["cats/01.png", "cats/02.png", "cats/more/0.png"]  # sorted, sub-folders too
    assert list(flow.classes) == [0, 0, 0, 1, 1, 2, 2, 2, 2] and len(flow) == 3
    x, y = flow[0]
    expected = np.stack([pixels[name] for name in flow.filenames[:4]]).astype(np.float32) / 255
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    np.testing.assert_array_equal(y, np.eye(3)[[0, 0, 0, 1]])
    for mode, check in [("sparse", lambda y: list(y) == [0, 0, 0, 1]), ("input", lambda y: y.shape == (4, 9, 7, 3))]:
        batch = ImageDataGenerator().flow_from_directory(tmp_path, target_size=(9, 7), batch_size=4,
                                                         shuffle=False, class_mode=mode)[0]
        assert check(batch[1])
    alone = ImageDataGenerator().flow_from_directory(tmp_path, target_size=(9, 7), class_mode=None, shuffle=False)
    assert alone[0].shape == (9, 9, 7, 3)


def test_grayscale_resize_binary_and_subsets(tmp_path, rng):
    pixels = image_folders(tmp_path, {"cats": 5, "dogs": 5}, rng)
    generator = ImageDataGenerator(validation_split=0.4)
    validation = generator.flow_from_directory(tmp_path, target_size=(4, 3), color_mode="grayscale",
                                               class_mode="binary", subset="validation", shuffle=False)
    training = generator.flow_from_directory(tmp_path, target_size=(4, 3), color_mode="grayscale",
                                             class_mode="binary", subset="training", shuffle=False)
    assert validation.filenames == ["cats/01.png", "cats/02.png", "dogs/00.png", "dogs/01.png"]  # first 2 of each
    assert training.samples == 6 and not set(training.filenames) & set(validation.filenames)
    x, y = validation[0]
    expected = np.asarray(Image.fromarray(pixels["cats/01.png"]).convert("L").resize((3, 4), Image.NEAREST))
    np.testing.assert_array_equal(x[0, :, :, 0], expected.astype(np.float32))
    np.testing.assert_array_equal(y, [0, 0, 1, 1])


def test_a_model_trains_on_a_directory_and_the_flow_resumes(tmp_path, rng):
    image_folders(tmp_path, {"a": 6, "b": 6}, rng, size=(6, 6))
    flow = ImageDataGenerator(rescale=1 / 255, horizontal_flip=True).flow_from_directory(
        tmp_path, target_size=(6, 6), batch_size=4, class_mode="categorical", seed=3)
    model = Sequential([Input((6, 6, 3)), Flatten(), Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(flow, epochs=2, verbose=0)
    state = flow.get_state()
    expected = next(flow)
    flow.set_state(state)
    again = next(flow)
    np.testing.assert_array_equal(expected[0], again[0])


@pytest.mark.errors
def test_directory_errors_name_the_problem(tmp_path, rng):
    image_folders(tmp_path, {"a": 1, "b": 1, "c": 1}, rng)
    generator = ImageDataGenerator()
    for kwargs, error, pattern in [
            (dict(directory=tmp_path / "nope"), FileNotFoundError, "no such folder"),
            (dict(directory=tmp_path, class_mode="binary"), ValueError, "exactly 2 class folders.*found 3"),
            (dict(directory=tmp_path, class_mode="multi"), ValueError, "class_mode must be one of"),
            (dict(directory=tmp_path, subset="validation"), ValueError, "needs ImageDataGenerator.validation_split"),
            (dict(directory=tmp_path, classes=["a", "zebra"]), FileNotFoundError, r"\['zebra'\] are not in"),
            (dict(directory=tmp_path, target_size=(0, 3)), ValueError, "target_size must be"),
            (dict(directory=tmp_path, color_mode="cmyk"), ValueError, "color_mode must be")]:
        with pytest.raises(error, match=pattern):
            generator.flow_from_directory(**kwargs)


def test_channel_shift_and_brightness_follow_keras(rng):
    x = rng.uniform(0, 1, (5, 4, 3)).astype(np.float32)
    generator = ImageDataGenerator(channel_shift_range=0.3)
    shifted = generator.apply_transform(x, {"channel_shift_intensity": 0.2})
    np.testing.assert_allclose(shifted, np.clip(x + 0.2, x.min(), x.max()), rtol=1e-6)
    np.testing.assert_allclose(ImageDataGenerator().apply_transform(x, {"brightness": 1.5}), x * 1.5, rtol=1e-6)
    params = ImageDataGenerator(channel_shift_range=0.3, brightness_range=[0.5, 1.5],
                                horizontal_flip=True).get_random_transform((5, 4, 3), seed=11)
    draws = np.random.default_rng(11)
    assert params["flip_horizontal"] == bool(draws.random(1)[0] < 0.5)  # Keras's order: flips, then these
    draws.random(1)  # the vertical flip's draw
    assert params["channel_shift_intensity"] == pytest.approx(draws.uniform(-0.3, 0.3, 1)[0])
    assert params["brightness"] == pytest.approx(draws.uniform(0.5, 1.5, 1)[0])


def test_zca_whitening_is_the_inverse_square_root_of_the_covariance(rng):
    x = rng.standard_normal((400, 3, 3, 2)).astype(np.float32) @ np.array([[1.0, 0.8], [0.0, 0.6]], np.float32)
    with pytest.warns(UserWarning, match="featurewise_center is switched on"):
        generator = ImageDataGenerator(zca_whitening=True, zca_epsilon=1e-6)
    generator.fit(x)
    centred = (x.astype(np.float64) - x.mean(axis=(0, 1, 2), dtype=np.float64)).reshape(400, -1)  # per channel
    reference = fractional_matrix_power(centred.T @ centred / 400 + 1e-6 * np.eye(18), -0.5)
    np.testing.assert_allclose(generator.principal_components, reference, rtol=1e-3, atol=1e-4)
    white = generator.standardize(x).reshape(400, -1)
    np.testing.assert_allclose(white.T @ white / 400, np.eye(18), atol=2e-3)


def test_preprocessing_function_comes_first_and_flow_subsets(rng):
    x = rng.uniform(0, 1, (10, 2, 2, 1)).astype(np.float32)
    generator = ImageDataGenerator(preprocessing_function=lambda image: image * 4, rescale=0.25, validation_split=0.3)
    np.testing.assert_allclose(generator.standardize(x), x, rtol=1e-6)
    validation = generator.flow(x, np.arange(10), batch_size=10, shuffle=False, subset="validation")
    training = generator.flow(x, np.arange(10), batch_size=10, shuffle=False, subset="training")
    assert list(validation[0][1]) == [0, 1, 2] and list(training[0][1]) == list(range(3, 10))
    with pytest.raises(TypeError, match="preprocessing_function must be a function"):
        ImageDataGenerator(preprocessing_function=3)
    with pytest.raises(ValueError, match="channels-last"):
        ImageDataGenerator(data_format="channels_first")
