"""Installed read-only with no writable home, the CPU kernels still compile: numba is pointed at a
temporary folder, or compiles without a cache, and one line says which.

The read-only places are made so that even root cannot write them (a file where a folder should
be), since a permission bit does not stop root."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernels, pytest.mark.errors]

ROOT = Path(__file__).resolve().parents[1]
FORWARD = """
import sys, tempfile
if len(sys.argv) > 1:  # a machine whose temporary folder cannot be written either
    tempfile.tempdir = sys.argv[1]
import numpy as np
from tinyconv import Model
from tinyconv.layers import Conv2D, Input, MaxPooling2D
inputs = Input((6, 6, 1))
model = Model(inputs, MaxPooling2D()(Conv2D(2, 3)(inputs)))
print(model.forward(np.ones((1, 6, 6, 1), np.float32)).shape)
"""


def run_read_only(tmp_path, temporary_dir_writable: bool):
    install = tmp_path / "site"
    shutil.copytree(ROOT / "tinyconv", install / "tinyconv", ignore=shutil.ignore_patterns("__pycache__"))
    (install / "tinyconv" / "kernels" / "__pycache__").write_text("not a folder")  # the install: read-only
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, so nothing can be made under it")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("NUMBA_CACHE", "XDG_"))}
    env.update(PYTHONPATH=str(install), HOME=str(blocked / "home"), TMPDIR=str(temporary))
    no_temporary = [] if temporary_dir_writable else [str(blocked / "tmp")]
    result = subprocess.run([sys.executable, "-c", FORWARD, *no_temporary], env=env, capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "(1, 2, 2, 2)"
    return result.stderr, temporary


@pytest.mark.slow
def test_a_read_only_install_caches_kernels_in_the_temporary_folder(tmp_path):
    err, temporary = run_read_only(tmp_path, temporary_dir_writable=True)
    notes = [line for line in err.splitlines() if line.startswith("tinyconv:")]
    assert len(notes) == 1 and "no writable cache for compiled kernels" in notes[0], err
    cached = list((temporary / f"tinyconv-numba-cache-{os.getuid()}").rglob("*.nbi"))
    assert cached, "nothing was cached in the temporary folder"


@pytest.mark.slow
def test_with_no_writable_folder_at_all_the_kernels_compile_without_a_cache(tmp_path):
    err, _ = run_read_only(tmp_path, temporary_dir_writable=False)
    notes = [line for line in err.splitlines() if line.startswith("tinyconv:")]
    assert len(notes) == 1 and "compiling them without a cache" in notes[0], err
