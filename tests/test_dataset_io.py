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
