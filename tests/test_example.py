"""``examples/train_cells.py --quick`` end to end: every artifact, a falling loss, an exact resume."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.example

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_cells.py"
PLOTS = ("learning_curves.png", "label_auc.png", "test_predictions.png", "first_layer_filters.png", "saliency.png",
         "feature_maps.png")
FILES = ("config.json", "history.csv", "checkpoint.npz", "model.weights.npz", "best.weights.npz", "model.keras", "labels.txt",
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


@pytest.mark.slow
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
    # Not a terminal: one plain progress line per epoch, no carriage-return bars.
    assert "\r" not in out and [line[:10] for line in out.splitlines() if line.startswith("Epoch ")] == ["Epoch 1/2 ", "Epoch 2/2 "]


@pytest.mark.slow
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
    assert markdown[0].startswith("Test loss (binary cross-entropy) ")
    table = [line for line in markdown if line.startswith("|")]
    assert table[0].startswith("| label |") and len(table) == 2 + 19
    assert any(line.startswith("- ROC AUC:") for line in markdown)  # the columns are explained
    assert "mean AUC" in out and "baseline mean AUC" in out


@pytest.mark.slow
@pytest.mark.determinism
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


# --- the flags, checked before any folder is made (in this process: nothing is trained) ------------------

def load_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_cells", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["--epochs", "-1"], "argument --epochs: expected a positive integer, got -1"),
    (["--epochs", "two"], "argument --epochs: expected a positive integer, got 'two'"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--n-samples", "-5"], "argument --n-samples: expected a positive integer, got -5"),
])
def test_bad_numbers_are_refused_in_one_line_before_any_folder(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        load_script().main(["--out", "runs", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f".py: {message} (see --help)\n") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def resumable_run(folder: Path, finished: int, planned: int) -> Path:
    from tinyconv.training import checkpoint
    from training_fixtures import tiny_model

    folder.mkdir()
    (folder / "config.json").write_text(f'{{"epochs": {planned}}}')
    checkpoint.save_checkpoint(folder / "checkpoint.npz", tiny_model(), epoch=finished)
    return folder


@pytest.mark.parametrize("flags, planned, message", [
    (["--epochs", "1"], 5, "the checkpoint holds 3 finished epochs; --epochs is the last epoch, not a count, "
                           "so it must be above 3, got 1"),
    (["--epochs", "3"], 5, "so it must be above 3, got 3"),
    ([], 3, "the run finished its 3 epochs; pass --epochs N (above 3) to train longer"),
])
def test_resume_with_nothing_left_to_train_is_refused_in_one_line(tmp_path, flags, planned, message):
    folder = resumable_run(tmp_path / "run", finished=3, planned=planned)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(SystemExit) as exit_:
        load_script().main(["--resume", str(folder), *flags])
    assert exit_.value.code.startswith(f"--resume {folder}: ") and exit_.value.code.endswith(message)
    assert "\n" not in exit_.value.code
    assert sorted(p.name for p in folder.iterdir()) == before


def test_help_states_each_default_once(capsys):
    with pytest.raises(SystemExit):
        load_script().main(["--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out and "default 9" in out and "default cpu" in out
    options = out.split("options:")[1].split("\n  -")  # one entry per option
    assert all(entry.count("default") <= 1 for entry in options), options




def test_a_resume_with_other_settings_or_a_damaged_config_is_refused_in_one_line(tmp_path):
    """Fails if --resume silently keeps the saved value of a setting given again differently, or if
    a damaged config.json ends in a traceback."""
    folder = resumable_run(tmp_path / "run", finished=1, planned=5)
    (folder / "config.json").write_text('{"epochs": 5, "image_size": 32, "seed": 0, "batch_size": 32}')
    for flags, message in [(["--image-size", "48"], "--image-size 48 (the run has 32)"),
                           (["--seed", "2", "--batch-size", "8"], "--batch-size 8 (the run has 32); --seed 2 (the run has 0)")]:
        with pytest.raises(SystemExit) as exit_:
            load_script().main(["--resume", str(folder), *flags])
        assert message in exit_.value.code and "only --epochs and --device may change" in exit_.value.code
    (folder / "config.json").write_text('{"epochs": 5, "image_')
    with pytest.raises(SystemExit) as exit_:
        load_script().main(["--resume", str(folder)])
    assert exit_.value.code.startswith(f"--resume {folder}: {folder}/config.json is damaged")
    assert "\n" not in exit_.value.code


@pytest.mark.parametrize("out", ["a_file", "a_file/runs"])
def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SystemExit) as exit_:
        load_script().main(["--quick", "--out", out])
    assert exit_.value.code.startswith(f"--out {out}: ") and "\n" not in exit_.value.code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def start_example(cwd: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), "--quick", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.training
def test_sigterm_in_the_first_epoch_saves_and_prints_the_resume_command(tmp_path):
    """As Ctrl-C does; fails if SIGTERM (kill, a batch system's time limit) ends the run with nothing saved."""
    import signal
    import time
    run = start_example(tmp_path, "--out", "runs", "--epochs", "2")
    seen = []
    for line in run.stdout:  # the first epoch begins once the warm-up says it is ready
        seen.append(line)
        if "ready in" in line:
            break
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=240)
    out = "".join(seen) + out
    (folder,) = (tmp_path / "runs").iterdir()
    assert run.returncode == 130, err[-2000:]
    assert "SIGTERM: stopping at the end of this batch" in err
    assert (folder / "checkpoint.npz").is_file() and f"--resume {folder.relative_to(tmp_path)}" in out


@pytest.mark.slow
def test_two_runs_started_together_on_one_data_dir_share_it(tmp_path):
    """The second used to stop with 'pass overwrite=True'; both must train, on the same images."""
    runs = [start_example(tmp_path, "--out", f"runs{i}", "--epochs", "1", "--data-dir", "cache") for i in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0, err[-3000:]
    from tinyconv.data import cells, load_dataset
    x, _ = cells.generate(300, image_size=32, seed=0)
    np.testing.assert_array_equal(load_dataset(tmp_path / "cache").images, x)


def test_a_label_with_one_class_reports_n_a_without_numpy_warnings(tmp_path):
    import importlib.util
    import warnings
    spec = importlib.util.spec_from_file_location("train_cells", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    from tinyconv.diagnostics import metrics
    y = np.array([[1, 0], [1, 1], [1, 0]], dtype=np.float32)  # label "a" is present in every image
    p = np.array([[0.9, 0.2], [0.8, 0.7], [0.6, 0.4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "Mean of empty slice" would fail here
        rows = metrics.per_label_report(y, p, ["a", "b"])
        example.write_report(rows, np.array([np.nan, 0.5]), tmp_path, 0.3, 0.9)
    table = (tmp_path / "report.md").read_text()
    assert "| a | 1.000 | 1.000 | n/a (one class only) |" in table and "| b | 0.333 | 1.000 | 1.000 |" in table
