"""``examples/vanishing_gradients.py --quick``: the files, the parameter counts, and the lesson itself."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.example, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "vanishing_gradients.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("vanishing")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", "runs"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (folder,) = (cwd / "runs").iterdir()
    with open(folder / "table.csv", newline="") as f:
        table = {row["variant"]: row for row in csv.DictReader(f)}
    return folder, table, result.stdout


def test_quick_run_writes_the_figure_the_table_and_the_logs(quick_run):
    folder, table, out = quick_run
    png = folder / "vanishing_gradients.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert list(table) == ["sigmoid", "leaky_relu", "batchnorm", "residual"]
    assert (folder / "table.md").read_text().count("\n") == 2 + 4
    for variant in table:
        with open(folder / f"{variant}-gradients.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        convolutions = [r for r in rows if r["layer"].startswith("conv2d") and r["epoch"] == "0"]
        assert len(convolutions) == 13
        assert float(table[variant]["first_conv_gradient"]) == pytest.approx(float(convolutions[0]["gradient_norm"]))
        assert (folder / f"{variant}-history.csv").is_file()
    assert "Everything is in" in out


def test_parameter_counts_follow_from_the_architecture(quick_run):
    _, table, _ = quick_run
    f, c, labels = 8, 3, 18  # --quick: 8 filters, RGB cells, 18 labels
    head = f * labels + labels
    with_bias = (9 * c * f + f) + 12 * (9 * f * f + f) + head
    normalised = 9 * c * f + 12 * 9 * f * f + 13 * 4 * f + head  # BatchNorm: gamma, beta and the moving pair
    assert [int(table[v]["params"]) for v in table] == [with_bias, with_bias, normalised, normalised]


def test_the_measured_lesson(quick_run):
    """Through 13 sigmoids the first layer's gradient all but vanishes; each remedy brings it back."""
    _, table, _ = quick_run
    ratio = {v: float(row["first_over_last"]) for v, row in table.items()}
    assert ratio["sigmoid"] < 1e-5
    assert ratio["sigmoid"] < ratio["leaky_relu"] < ratio["batchnorm"]
    assert ratio["batchnorm"] > 0.1 and ratio["residual"] > 0.1
