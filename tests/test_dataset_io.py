"""Data set folders: round trips, atomic writes, validation errors that name the file, and the split."""
import json

import numpy as np
import pytest

from tinyconv.data import cells, load_dataset, save_dataset, split

pytestmark = pytest.mark.data


def small(n=10, h=6, w=5, c=3, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, h, w, c)).astype(np.float32), rng.integers(0, 2, (n, labels)).astype(np.uint8)


def meta_for(y):
    return {"label_names": [f"l{i}" for i in range(y.shape[1])]}


def test_make_dataset_round_trip(tmp_path):
    path = cells.make_dataset(tmp_path / "cells", n=20, image_size=24, channels=3, seed=5)
    images, labels, meta = load_dataset(path)
    x, y = cells.generate(20, image_size=24, channels=3, seed=5)
    assert np.array_equal(images, x) and np.array_equal(labels, y)
    assert meta["label_names"] == list(cells.LABELS)
    assert meta["seed"] == 5 and meta["simulator_version"] == cells.VERSION
    assert meta["parameters"]["image_size"] == 24 and "created" in meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells"]  # no temporary folder left


def test_uint8_storage_and_memory_map(tmp_path):
    x, y = small()
    save_dataset(tmp_path / "d", x, y, meta_for(y), dtype="uint8")
    data = load_dataset(tmp_path / "d", mmap=True)
    assert data.images.dtype == np.uint8 and isinstance(data.images, np.memmap)
    np.testing.assert_array_equal(data.images, np.round(x * 255).astype(np.uint8))


def test_existing_folder_needs_overwrite(tmp_path):
    x, y = small()
    save_dataset(tmp_path / "d", x, y, meta_for(y))
    with pytest.raises(FileExistsError, match="overwrite"):
        save_dataset(tmp_path / "d", x, y, meta_for(y))
    save_dataset(tmp_path / "d", x[:4], y[:4], meta_for(y), overwrite=True)
    assert len(load_dataset(tmp_path / "d").images) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def write_raw(folder, images, labels, meta):
    folder.mkdir()
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", labels)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("missing", ["images.npy", "labels.npy", "meta.json"])
def test_missing_file_is_named(tmp_path, missing):
    x, y = small()
    folder = write_raw(tmp_path / "d", x, y, meta_for(y))
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_dataset(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_dataset(tmp_path / "nothing")


@pytest.mark.parametrize("corrupt, file, message", [
    (lambda x, y, m: (x[:-1], y, m), "images.npy", "N=9"),
    (lambda x, y, m: (x[..., 0], y, m), "images.npy", "rank 4"),
    (lambda x, y, m: (x, y[:, 0], m), "labels.npy", "rank 2"),
    (lambda x, y, m: (x, y + 1, m), "labels.npy", r"\{0, 1\}"),
    (lambda x, y, m: (np.where(x > 0.9, np.nan, x).astype(np.float32), y, m), "images.npy", "NaN"),
    (lambda x, y, m: (np.where(x > 0.9, np.inf, x).astype(np.float32), y, m), "images.npy", "inf"),
    (lambda x, y, m: (x, y, {"label_names": m["label_names"][:-1]}), "meta.json", "4 entries"),
    (lambda x, y, m: (x.astype(np.int16), y, m), "images.npy", "uint8 or float"),
])
def test_invalid_data_is_reported_with_the_file_name(tmp_path, corrupt, file, message):
    x, y = small()
    folder = write_raw(tmp_path / "d", *corrupt(x, y, meta_for(y)))
    with pytest.raises(ValueError, match=message) as error:
        load_dataset(folder)
    assert file in str(error.value) or "images.npy" in str(error.value)


def test_broken_meta_json_is_reported(tmp_path):
    x, y = small()
    folder = write_raw(tmp_path / "d", x, y, meta_for(y))
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json"):
        load_dataset(folder)


def test_save_rejects_bad_labels_without_writing(tmp_path):
    x, y = small()
    with pytest.raises(ValueError, match="labels.npy"):
        save_dataset(tmp_path / "d", x, y * 3, meta_for(y))
    assert list(tmp_path.iterdir()) == []


def test_split_is_80_10_10_disjoint_and_deterministic():
    n = 1003
    x = np.arange(n)[:, None, None, None].astype(np.float32)
    y = (np.arange(n)[:, None] % 2).astype(np.uint8)
    (xtr, ytr), (xva, yva), (xte, yte) = split(x, y)
    assert (len(xtr), len(xva), len(xte)) == (802, 100, 101)
    ids = np.concatenate([xtr, xva, xte]).ravel().astype(int)
    assert sorted(ids) == list(range(n))
    np.testing.assert_array_equal(ytr.ravel(), xtr.ravel().astype(int) % 2)
    again = split(x, y)
    assert np.array_equal(again[2][0], xte)
    assert not np.array_equal(split(x, y, random_state=0)[2][0], xte)


def test_split_equals_scikit_learn_when_available():
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = np.arange(257), np.arange(257) % 3
    xtr, xho, ytr, yho = model_selection.train_test_split(x, y, test_size=0.2, random_state=42)
    xva, xte, _, _ = model_selection.train_test_split(xho, yho, test_size=0.5, random_state=42)
    (a, _), (b, _), (c, _) = split(x, y)
    assert np.array_equal(a, xtr) and np.array_equal(b, xva) and np.array_equal(c, xte)


# --- damaged files ---------------------------------------------------------------------------------

def damage(kind, data: bytes) -> bytes:
    return {"empty": b"", "truncated header": data[:40], "truncated data": data[:-7],
            "random bytes": np.random.default_rng(3).bytes(len(data))}[kind]


@pytest.mark.parametrize("kind", ["empty", "truncated header", "truncated data", "random bytes"])
@pytest.mark.parametrize("file", ["images.npy", "labels.npy"])
@pytest.mark.parametrize("mmap", [False, True])
def test_damaged_npy_files_are_named(tmp_path, kind, file, mmap):
    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    (folder / file).write_bytes(damage(kind, (folder / file).read_bytes()))
    with pytest.raises(ValueError, match=rf"load_dataset: .*d/{file} is not a readable \.npy array"):
        load_dataset(folder, mmap=mmap)


def test_meta_json_of_random_bytes_is_named(tmp_path):
    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    (folder / "meta.json").write_bytes(np.random.default_rng(0).bytes(64) + b"\xff")
    with pytest.raises(ValueError, match=r"meta\.json is not valid JSON"):
        load_dataset(folder)


@pytest.mark.parametrize("images, message", [
    (lambda x: x.byteswap(), r"(float pixels must lie in \[0, 1\]|NaN or inf pixels)"),  # bytes reversed
    (lambda x: x - 0.5, r"from -0\.\d+ to"),
    (lambda x: x * 255, r"to 2\d\d(\.\d+)? in images 0\.\.9"),
])
def test_float_pixels_outside_the_unit_range_are_refused(tmp_path, images, message):
    x, y = small()
    folder = write_raw(tmp_path / "d", images(x), y, meta_for(y))
    with pytest.raises(ValueError, match=rf"d/images\.npy: .*{message}"):
        load_dataset(folder)
    with pytest.raises(ValueError, match=rf"images\.npy: .*{message}"):
        save_dataset(tmp_path / "e", images(x), y, meta_for(y))


def test_pixels_at_the_ends_of_the_range_load(tmp_path):
    x, y = small()
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0
    np.testing.assert_array_equal(load_dataset(save_dataset(tmp_path / "d", x, y, meta_for(y))).images, x)


# --- a full disk --------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   OSError("8192 requested and 992 written")])
def test_a_full_disk_names_the_path_and_keeps_the_old_copy(tmp_path, monkeypatch, error):
    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))

    def save_until_full(file, array):
        file.write(b"\x93NUMPY partial")
        raise error

    monkeypatch.setattr(np, "save", save_until_full)
    with pytest.raises(OSError, match=rf"save_dataset: could not write {tmp_path}/d: "
                                      rf"({error.strerror}|8192 requested and 992 written \(is the disk full\?\))") as info:
        save_dataset(folder, x[:3], y[:3], meta_for(y), overwrite=True)
    assert info.value.errno == error.errno
    monkeypatch.undo()
    assert len(load_dataset(folder).images) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# --- atomic writes: what killed writes leave, and permissions -------------------------------------------

def dead_pid() -> int:
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_the_target_are_removed_and_nothing_else(tmp_path):
    import os
    import time

    from tinyconv.layers import Dense, Input
    from tinyconv import Model

    gone, alive = dead_pid(), os.getppid()
    stale = [f".d.tmp-{gone}-0123abcd", f".d.old-{gone}-89abcdef", f".w.npz.tmp-{gone}-00ff00ff",
             f".d.tmp-{alive}-aaaaaaaa"]  # the last one is old (below), so not a running write
    kept = [f".d.tmp-{alive}-bbbbbbbb", f".e.tmp-{gone}-0123abcd", ".d.tmp-notes", "d.tmp-1-0123abcd",
            f".w.npz.tmp-{alive}-cccccccc"]
    for name in stale + kept:
        (tmp_path / name).mkdir() if ".d." in name or name.startswith(".e") else (tmp_path / name).write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / stale[-1], (day_ago, day_ago))

    x, y = small()
    save_dataset(tmp_path / "d", x, y, meta_for(y))
    inputs = Input((3,))
    Model(inputs, Dense(2)(inputs)).save_weights(tmp_path / "w.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["d", "w.npz"])


KILL_BETWEEN_RENAMES = """
import os, sys
from pathlib import Path
import numpy as np
from tinyconv.data import save_dataset

rename = Path.rename
def rename_then_die(self, target):
    if Path(target).name == "d":  # the second rename: the new copy into place
        os._exit(9)               # as kill -9 would: no cleanup runs
    return rename(self, target)

Path.rename = rename_then_die
x = np.full((3, 4, 4, 1), 0.25, np.float32)
save_dataset(sys.argv[1], x, np.zeros((3, 2), np.uint8), {}, overwrite=True)
"""


def test_a_kill_between_the_two_renames_of_an_overwrite_loses_nothing(tmp_path):
    import os
    import subprocess
    import sys

    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(folder)], env=env)
    assert done.returncode == 9 and not folder.exists()  # the window: nothing at the data set's path
    data = load_dataset(folder)  # finds the complete new copy and finishes the swap
    assert data.images.shape == (3, 4, 4, 1) and np.all(data.images == 0.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_an_interrupt_between_the_renames_puts_the_old_copy_back(tmp_path, monkeypatch):
    from pathlib import Path

    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    rename = Path.rename

    def rename_then_interrupt(self, target):
        if Path(target).name == "d" and self.name.startswith(".d.tmp-"):  # the new copy into place
            raise KeyboardInterrupt
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(folder, x[:3], y[:3], meta_for(y), overwrite=True)
    monkeypatch.undo()
    assert len(load_dataset(folder).images) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_files_and_folders_follow_the_umask(tmp_path, umask):
    import os
    import stat

    from tinyconv import checkpoint
    from training_fixtures import tiny_model

    x, y = small()
    previous = os.umask(umask)
    try:
        folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
        model = tiny_model()
        model.save_weights(tmp_path / "w.npz")
        checkpoint.save_checkpoint(tmp_path / "s.npz", model, epoch=0)
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert mode(folder) == 0o777 & ~umask
    for path in [*folder.iterdir(), tmp_path / "w.npz", tmp_path / "s.npz"]:
        assert mode(path) == 0o666 & ~umask, path.name
