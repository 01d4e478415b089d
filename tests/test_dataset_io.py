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


def current_version(folder):
    """The folder that holds the files of the data set's current version."""
    return folder / (folder / "current").read_text().strip()


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
    files = current_version(folder)
    (files / file).write_bytes(damage(kind, (files / file).read_bytes()))
    with pytest.raises(ValueError, match=rf"load_dataset: .*d/v-[-0-9a-f]+/{file} is not a readable \.npy array"):
        load_dataset(folder, mmap=mmap)


def test_meta_json_of_random_bytes_is_named(tmp_path):
    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    (current_version(folder) / "meta.json").write_bytes(np.random.default_rng(0).bytes(64) + b"\xff")
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


@pytest.mark.training
def test_stale_temporaries_of_the_target_are_removed_and_nothing_else(tmp_path):
    import os
    import time

    from tinyconv.layers import Dense, Input
    from tinyconv import Model

    gone, alive = dead_pid(), os.getppid()
    stale = [f".w.npz.tmp-{gone}-00ff00ff", f".w.npz.tmp-{alive}-aaaaaaaa"]  # the last one is old (below)
    kept = [f".w.npz.tmp-{alive}-cccccccc", f".e.tmp-{gone}-0123abcd", ".w.npz.tmp-notes", "w.npz.tmp-1-0123abcd"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / stale[-1], (day_ago, day_ago))

    inputs = Input((3,))
    Model(inputs, Dense(2)(inputs)).save_weights(tmp_path / "w.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["w.npz"])


def test_a_killed_saves_version_is_removed_by_the_next_save_and_nothing_else(tmp_path):
    """A save killed before it published leaves its version folder; the next save (which holds the
    writers' lock, so no other save is running) removes it, and only it."""
    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    unpublished = folder / f"v-1-{dead_pid()}-0123abcd"
    unpublished.mkdir()
    (unpublished / "images.npy").write_bytes(b"half")
    (tmp_path / "d.notes").write_text("mine")
    save_dataset(folder, x[:4], y[:4], meta_for(y), overwrite=True)
    names = sorted(p.name for p in folder.iterdir())
    assert names[:2] == [".lock", "current"] and len(names) == 3 and names[2] != unpublished.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.notes"]
    assert len(load_dataset(folder).images) == 4


def test_an_interrupt_before_the_pointer_moves_keeps_the_old_set_and_leaves_nothing(tmp_path, monkeypatch):
    import os

    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    before = sorted(p.name for p in folder.iterdir())

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(folder, x[:3], y[:3], meta_for(y), overwrite=True)
    monkeypatch.undo()
    assert len(load_dataset(folder).images) == 10
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_folder_made_by_hand_is_read_and_then_replaced_by_versions(tmp_path):
    x, y = small()
    folder = write_raw(tmp_path / "d", x, y, meta_for(y))
    assert len(load_dataset(folder).images) == 10
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_dataset(folder, x[:2], y[:2], meta_for(y))
    save_dataset(folder, x[:2], y[:2], meta_for(y), overwrite=True)
    assert not any((folder / name).exists() for name in ("images.npy", "labels.npy", "meta.json"))
    assert len(load_dataset(folder).images) == 2


def test_a_folder_of_other_files_or_a_file_is_not_written_into(tmp_path):
    x, y = small()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"png")
    with pytest.raises(FileExistsError, match=r"photos holds other files \(a\.png\) and no data set"):
        save_dataset(tmp_path / "photos", x, y, meta_for(y), overwrite=True)
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["a.png"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="f is a file, not a data set folder"):
        save_dataset(tmp_path / "f", x, y, meta_for(y), overwrite=True)


def test_a_damaged_pointer_is_named(tmp_path):
    x, y = small()
    folder = save_dataset(tmp_path / "d", x, y, meta_for(y))
    (folder / "current").write_text("../../etc")
    with pytest.raises(ValueError, match=r"load_dataset: .*d/current is damaged: it should name a version folder"):
        load_dataset(folder)


# --- processes sharing a data set folder (real processes, bounded in time) ---------------------------------

SHARING = r"""
import sys, time
import numpy as np
from tinyconv.data import cells, load_dataset, save_dataset

role, folder, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
stop = time.time() + seconds
if role == "writer":  # replaces the set again and again with versions that tell themselves apart
    version = 0
    while time.time() < stop:
        version += 1
        n = 2 + version % 5
        save_dataset(folder, np.full((n, 4, 4, 1), (version % 200) / 255, np.float32),
                     np.full((n, 2), version % 2, np.uint8), {"version": version}, overwrite=True)
    print(version)
elif role == "reader":  # every read must be one version whole
    reads = 0
    while time.time() < stop:
        images, labels, meta = load_dataset(folder, mmap=reads % 2 == 1)
        version = meta["version"]
        assert len(images) == len(labels) == 2 + version % 5, (version, images.shape, labels.shape)
        assert np.all(images == np.float32((version % 200) / 255)), version
        assert np.all(labels == version % 2), version
        reads += 1
    print(reads)
elif role == "first":  # save without overwrite, at the same moment as another process
    while time.time() < stop:
        pass
    try:
        save_dataset(folder, np.full((3, 4, 4, 1), 0.5, np.float32), np.zeros((3, 2), np.uint8), {"by": sys.argv[4]})
        print("saved")
    except FileExistsError as exc:
        print("refused:", exc)
elif role == "make":  # two first runs on one cache
    while time.time() < stop:
        pass
    images, labels, meta = cells.load_or_make(folder, n=40, image_size=24, seed=3)
    print(float(images.sum()), int(labels.sum()))
"""


def start(role, folder, seconds, *extra):
    import os
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", SHARING, role, str(folder), str(seconds), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return out.strip()


def test_readers_see_one_whole_version_while_a_writer_replaces_the_set(tmp_path):
    """A reader must never get images of one version with labels or meta.json of another, nor a
    damaged-file error, however its reads and the writer's replacements interleave."""
    folder = save_dataset(tmp_path / "d", np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 2), np.uint8),
                          {"version": 0})
    writer = start("writer", folder, 4)
    readers = [start("reader", folder, 4) for _ in range(2)]
    reads = [int(finish(r)) for r in readers]
    versions = int(finish(writer))
    assert versions > 5 and min(reads) > 5, (versions, reads)  # they did overlap
    assert len([p for p in folder.iterdir() if p.name.startswith("v-")]) == 1


def test_two_saves_without_overwrite_at_once_save_one_and_refuse_the_other(tmp_path):
    import time
    folder = tmp_path / "d"
    at = time.time() + 2.0
    runs = [start("first", folder, at - time.time(), name) for name in ("a", "b")]
    outputs = sorted(finish(r) for r in runs)
    assert outputs[0].startswith("refused:") and "holds a data set" in outputs[0], outputs
    assert outputs[1] == "saved", outputs
    assert load_dataset(folder).meta["by"] in ("a", "b")


def test_two_first_runs_on_one_cache_share_it(tmp_path):
    import time
    folder = tmp_path / "cache"
    at = time.time() + 2.0
    runs = [start("make", folder, at - time.time()) for _ in range(2)]
    outputs = [finish(r) for r in runs]
    x, y = cells.generate(40, image_size=24, seed=3)
    assert outputs == [f"{float(load_dataset(folder).images.sum())} {int(y.sum())}"] * 2
    np.testing.assert_array_equal(load_dataset(folder).images, x)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_files_and_folders_follow_the_umask(tmp_path, umask):
    import os
    import stat

    from tinyconv.training import checkpoint
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
    version = current_version(folder)
    assert mode(version) == 0o777 & ~umask
    for path in [folder / "current", *version.iterdir(), tmp_path / "w.npz", tmp_path / "s.npz"]:
        assert mode(path) == 0o666 & ~umask, path.name
