"""``examples/predict_cells.py``: a finished run predicts on new, unlabelled images, the same as the
training pipeline (weights + the generator's standardisation) and as Keras 3 reading ``model.keras``."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tinyconv.data import ImageDataGenerator, load_images, split
from tinyconv.models import load_model

pytestmark = [pytest.mark.example, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300)
    if ok:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def cells(folder: Path, n: int, rng, with_labels: bool = True) -> None:
    """RGB PNGs whose red square (label a) and blue stripe (label b) come and go."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        a, b = int(rng.random() < 0.5), int(rng.random() < 0.5)
        pixels = rng.integers(0, 60, (20, 20, 3)).astype(np.uint8)
        if a:
            pixels[4:12, 4:12, 0] = 240
        if b:
            pixels[:, 14:17, 2] = 240
        Image.fromarray(pixels).save(folder / f"cell{i:03d}.png")
        rows.append((f"cell{i:03d}.png", a, b))
    if with_labels:
        with open(folder / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("file", "square", "stripe"), *rows])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(3)
    cells(cwd / "train", 60, rng)
    cells(cwd / "new", 9, rng, with_labels=False)
    run("train_cells.py", cwd, "--quick", "--images", "train", "--labels", "train/labels.csv", "--image-size", "16",
        "--out", "runs")
    (folder,) = sorted((cwd / "runs").iterdir())
    return cwd, folder


def test_predictions_equal_the_training_pipeline(finished_run):
    cwd, folder = finished_run
    result = run("predict_cells.py", cwd, str(folder), "--images", "new")
    assert "Predicted 9 images" in result.stdout
    with open(cwd / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "square", "stripe", "square_call", "stripe_call"]
    assert [row["file"] for row in rows] == [f"cell{i:03d}.png" for i in range(9)]
    # The reference: the weights file and the generator's statistics, as train_cells.py used them.
    x, y, _ = load_images(cwd / "train", cwd / "train" / "labels.csv", image_size=16)
    (x_train, _), _, _ = split(x, y.astype(np.float32), random_state=42)
    generator = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    generator.fit(x_train)
    sys.path.insert(0, str(EXAMPLES))
    import train_cells
    network = train_cells.build_model((16, 16, 3), 2)
    network.load_weights(folder / "model.weights.npz")
    expected = network.predict(generator.standardize(load_images(cwd / "new", image_size=16).images))
    got = np.array([[float(row["square"]), float(row["stripe"])] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    calls = np.array([[int(row["square_call"]), int(row["stripe_call"])] for row in rows])
    np.testing.assert_array_equal(calls, got > 0.5)
    assert (cwd / "predictions_gallery.png").read_bytes()[:4] == b"\x89PNG"


def test_keras_3_reads_the_runs_model_file(finished_run):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="needs Keras 3 with a CPU backend (pip install keras torch)")
    cwd, folder = finished_run
    images = load_images(cwd / "new", image_size=16).images
    theirs = keras.saving.load_model(folder / "model.keras")
    np.testing.assert_allclose(theirs.predict(images, verbose=0), load_model(folder / "model.keras").predict(images),
                               rtol=1e-5, atol=1e-6)


def test_one_file_and_clear_refusals(finished_run, tmp_path):
    cwd, folder = finished_run
    run("predict_cells.py", cwd, str(folder), "--images", "new/cell004.png", "--out", str(tmp_path / "one.csv"))
    assert len((tmp_path / "one.csv").read_text().splitlines()) == 2
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(grey / "g.png")
    result = run("predict_cells.py", cwd, str(folder), "--images", str(grey), ok=False)
    assert result.returncode != 0 and "g.png has 1 channels, but the run's model takes 3" in result.stderr
    assert '"uint8"' in (folder / "training_images.json").read_text()
    deep = tmp_path / "deep"
    deep.mkdir()
    Image.fromarray(np.full((20, 20, 3), 60, np.uint8)).save(deep / "a.png")
    tifffile.imwrite(deep / "b.tif", np.full((20, 20, 3), 900, np.uint16))
    result = run("predict_cells.py", cwd, str(folder), "--images", str(deep), "--out", str(tmp_path / "deep.csv"),
                 ok=False)
    assert "b.tif has 16-bit pixels (uint16), but the run was trained on 8-bit (uint8) images" in result.stderr
    assert result.returncode != 0 and not (tmp_path / "deep.csv").exists()
    tifffile.imwrite(deep / "b.tif", np.full((20, 20, 3), 0.5, np.float32))
    result = run("predict_cells.py", cwd, str(folder), "--images", str(deep / "b.tif"), ok=False)
    assert "b.tif has 32-bit float pixels (float32)" in result.stderr
    empty = tmp_path / "run"
    empty.mkdir()
    result = run("predict_cells.py", cwd, str(empty), "--images", "new", ok=False)
    assert "has no model.keras, labels.txt, config.json" in result.stderr
