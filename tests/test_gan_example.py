"""``examples/gan_cells.py --quick`` end to end: its files, its history, and a resume equal to a straight run."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyconv.training import checkpoint

pytestmark = [pytest.mark.example, pytest.mark.generative, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "gan_cells.py"


def run_example(cwd: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", "runs", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def weights(folder: Path) -> dict:
    state = checkpoint.read(folder / "checkpoint.npz")
    return {f"{model}/{key}": value for model in ("generator", "discriminator")
            for key, value in state[model]["weights"].items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A straight two-epoch run, and a one-epoch run resumed to two epochs, in one data folder."""
    cwd = tmp_path_factory.mktemp("gan")
    straight = run_example(cwd, "--out", "straight")
    run_example(cwd, "--out", "resumed", "--epochs", "1")
    (first,) = (cwd / "resumed").iterdir()
    resumed = run_example(cwd, "--resume", str(first), "--epochs", "2")
    (straight_folder,) = (cwd / "straight").iterdir()
    return straight_folder, first, straight.stdout, resumed.stdout


def test_the_quick_run_writes_every_artifact(runs):
    folder, _, stdout, _ = runs
    for name in ("config.json", "checkpoint.npz", "history.csv", "report.json", "grids/real.png",
                 "grids/epoch-001.png", "grids/epoch-002.png", "plots/gan_history.png",
                 "plots/real_vs_generated.png", "plots/label_prevalence.png"):
        assert (folder / name).is_file(), name
    with open(folder / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("d_loss", "g_loss", "frechet"))
    report = json.loads((folder / "report.json").read_text())
    assert len(report["label_prevalence"]) == 18 and len(report["frechet_per_epoch"]) == 2
    assert "Fréchet distance" in stdout


@pytest.mark.determinism
def test_a_resumed_run_equals_the_straight_run_bit_for_bit(runs):
    straight, resumed, _, stdout = runs
    assert "Resuming after epoch 1 of 2" in stdout
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with open(straight / "history.csv") as f, open(resumed / "history.csv") as g:
        assert f.read() == g.read()


def test_resume_without_more_epochs_is_refused_in_one_line(runs, tmp_path):
    straight, *_ = runs
    result = run_example(tmp_path, "--resume", str(straight), "--epochs", "2", expect=1)
    assert "finished 2 epochs" in result.stderr and "Traceback" not in result.stderr


def test_invalid_sizes_are_refused_before_a_folder_is_made(tmp_path):
    result = run_example(tmp_path, "--epochs", "0", expect=2)
    assert "--epochs must be at least 1" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--latent-dim", "8"], r"--latent-dim 8 \(the run has 16\)"),
    (["--batch-size", "16"], r"--batch-size 16 \(the run has 32\)"),
    (["--seed", "3"], r"--seed 3 \(the run has 0\)"),
])
def test_a_resume_with_other_settings_is_refused_in_one_line(runs, tmp_path, flags, message):
    """Fails if --resume silently keeps the saved value (the run would not be the one asked for)."""
    import re
    straight, *_ = runs
    config = json.loads((straight / "config.json").read_text())
    expected = re.sub(r"the run has \d+", f"the run has {config[flags[0][2:].replace('-', '_')]}", message)
    result = run_example(tmp_path, "--resume", str(straight), "--epochs", "3", *flags, expect=1)
    assert re.search(expected, result.stderr) and "only --epochs and --device may change" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_damaged_config_on_resume_is_refused_in_one_line(runs, tmp_path):
    import shutil
    straight, *_ = runs
    copy = tmp_path / "copy"
    shutil.copytree(straight, copy)
    (copy / "config.json").write_text('{"epochs": 2, "batch')
    result = run_example(tmp_path, "--resume", str(copy), "--epochs", "3", expect=1)
    assert "config.json is damaged" in result.stderr and "Traceback" not in result.stderr


def test_fewer_training_cells_than_one_batch_are_refused(tmp_path):
    result = run_example(tmp_path, "--n-samples", "40", "--batch-size", "64", "--epochs", "1", expect=1)
    assert "--batch-size 64 is larger than the 32 training cells" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("out", ["a_file", "a_file/runs"])
def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path, out):
    (tmp_path / "a_file").write_text("x")
    result = run_example(tmp_path, "--out", out, "--epochs", "1", expect=1)
    assert f"--out {out}:" in result.stderr and "Traceback" not in result.stderr
