"""Atomic writes fail at every step and leave the previous version whole.

A write is a sequence of steps (fill a temporary, flush, fsync, rename; for a data set folder, three
files synced, its pointer replaced, the old version removed). A bug in their order (the target removed before the rename, say) shows only
when the write stops between exactly those two steps, so each test here stops it at every step in
turn: by an ``OSError`` (a full disk, a read-only folder) and by a kill (``os._exit``) before and
after each system call, in a fresh process.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinyconv.storage import atomic
from tinyconv.data import load_dataset, save_dataset

pytestmark = [pytest.mark.training, pytest.mark.data]

FILE_STEPS = [("write", 1), ("fsync", 1), ("replace", 1)]


def leftovers(folder, name):
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("step, call", FILE_STEPS)
def test_an_error_at_any_step_of_a_file_write_keeps_the_old_file(tmp_path, monkeypatch, step, call):
    target = tmp_path / "weights.npz"
    target.write_bytes(b"old contents")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def write(f):
        f.write(b"new")
        if step == "write":
            fail()
        f.write(b" contents")

    if step != "write":
        monkeypatch.setattr(atomic.os, step, fail)
    with pytest.raises(OSError, match="weights.npz"):
        atomic.write_file(target, write, "saving")
    assert target.read_bytes() == b"old contents"
    assert leftovers(tmp_path, "weights.npz") == []


KILLER = textwrap.dedent("""
    import os, shutil, sys
    from pathlib import Path
    import numpy as np
    from tinyconv.storage import atomic
    from tinyconv.data import save_dataset

    what, target, function, call, when = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    owner = {"fsync": os, "replace": os, "rmtree": shutil, "rename": Path}[function]
    original, calls = getattr(owner, function), [0]

    def stopped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call and when == "before":
            os._exit(9)
        result = original(*args, **kwargs)
        if calls[0] == call and when == "after":
            os._exit(9)
        return result

    setattr(owner, function, stopped)
    if what == "file":
        atomic.write_file(target, lambda f: f.write(b"new contents"), "saving")
    else:
        save_dataset(target, np.full((3, 2, 2, 1), 0.75, np.float32), np.ones((3, 2), np.uint8), {"version": "new"},
                     overwrite=True)
    print("finished")
""")


def run_killed(what, target, function, call, when):
    result = subprocess.run([sys.executable, "-c", KILLER, what, str(target), function, str(call), when],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 9), result.stderr[-2000:]
    return result.returncode == 9


@pytest.mark.parametrize("function, call", [("fsync", 1), ("replace", 1)])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_around_any_step_of_a_file_write_leaves_a_whole_file(tmp_path, function, call, when):
    target = tmp_path / "history.csv"
    target.write_bytes(b"old contents")
    assert run_killed("file", target, function, call, when)
    replaced = function == "replace" and when == "after"
    assert target.read_bytes() == (b"new contents" if replaced else b"old contents")
    atomic.remove_stale(target)  # the next write's first step
    assert leftovers(tmp_path, "history.csv") == []


DATASET_STEPS = [("fsync", 1), ("fsync", 3), ("fsync", 4), ("replace", 1), ("rmtree", 1)]


@pytest.mark.parametrize("function, call", DATASET_STEPS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_around_any_step_of_a_data_set_swap_leaves_one_whole_version(tmp_path, function, call, when):
    """The folder is then the old set or the new one, never a mix and never missing: the new one
    exists for readers from the moment the pointer ``current`` is replaced, not before."""
    target = tmp_path / "cells"
    save_dataset(target, np.full((2, 2, 2, 1), 0.25, np.float32), np.zeros((2, 2), np.uint8), {"version": "old"})
    killed = run_killed("dataset", target, function, call, when)
    assert killed, "the kill point was never reached"
    data = load_dataset(target)
    version = data.meta["version"]
    expected = {"old": (2, 0.25, 0), "new": (3, 0.75, 1)}[version]
    assert (len(data.images), float(data.images.max()), int(data.labels.max())) == expected
    if function == "replace" and when == "after" or function == "rmtree":
        assert version == "new"
    if function == "fsync" or (function == "replace" and when == "before"):
        assert version == "old"
