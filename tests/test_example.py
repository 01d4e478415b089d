"""``examples/train_cells.py --quick`` end to end: every artifact, a falling loss, an exact resume."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.example, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_cells.py"
PLOTS = ("learning_curves.png", "label_auc.png", "test_predictions.png", "first_layer_filters.png", "saliency.png",
         "feature_maps.png")
FILES = ("config.json", "history.csv", "checkpoint.npz", "model.weights.npz", "best.weights.npz",
         "report.csv", "report.md")


def run_example(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", "runs", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_folders(cwd: Path) -> list[Path]:
    return sorted((cwd / "runs").iterdir())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("quick")
    result = run_example(cwd)
    (folder,) = run_folders(cwd)
    return cwd, folder, result.stdout


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_every_artifact(quick_run):
    cwd, folder, out = quick_run
    for name in FILES:
        assert (folder / name).is_file(), name
    for name in PLOTS:
        png = folder / "plots" / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 10_000, f"{name} looks empty"
    assert any((cwd / "data").iterdir()), "the simulated data set is cached under data/"
    assert "Total params: 1,311,186" in out  # the seed's CNN, summarised
    assert "numba kernels" in out


def test_quick_run_report_and_falling_loss(quick_run):
    _, folder, out = quick_run
    history = read_rows(folder / "history.csv")
    assert [r["epoch"] for r in history] == ["0", "1"]
    assert set(history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert float(history[1]["loss"]) < float(history[0]["loss"])

    report = read_rows(folder / "report.csv")
    assert len(report) == 19 and report[-1]["label"] == "mean"
    assert set(report[0]) == {"label", "prevalence", "accuracy", "auc", "f1", "baseline_auc"}
    aucs = [float(r["auc"]) for r in report[:-1]]
    assert float(report[-1]["auc"]) == pytest.approx(np.nanmean(aucs), abs=1e-9)
    markdown = (folder / "report.md").read_text().splitlines()
    assert markdown[0].startswith("| label |") and len(markdown) == 2 + 19
    assert "mean AUC" in out and "baseline mean AUC" in out


def test_resumed_quick_run_equals_the_uninterrupted_one(quick_run, tmp_path):
    _, straight, _ = quick_run
    run_example(tmp_path, "--epochs", "1")
    (folder,) = run_folders(tmp_path)
    result = run_example(tmp_path, "--resume", str(folder), "--epochs", "2")
    assert "Resuming after epoch 1 of 2" in result.stdout
    with np.load(straight / "model.weights.npz") as a, np.load(folder / "model.weights.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [r["epoch"] for r in read_rows(folder / "history.csv")] == ["0", "1"]  # appended, not overwritten
