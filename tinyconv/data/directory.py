"""``ImageDataGenerator.flow_from_directory``: a folder with one sub-folder of images per class.

    data/train/
        cats/  cat001.jpg, cat002.jpg, ...
        dogs/  dog001.jpg, ...

The classes are the sub-folders' names in sorted order (or ``classes=[...]``, in that order), so
``class_indices`` is ``{"cats": 0, "dogs": 1}``; every image file below a class folder (PNG, JPEG,
BMP, PPM, TIFF: what Pillow reads, sub-folders included, in sorted order) is one sample of it.
Each batch is read from disk when it is served: ``load_img`` at ``target_size`` and in
``color_mode``, then the generator's random transform and standardisation. Its labels follow
``class_mode``:

- ``"categorical"``: one-hot rows (N, K);  ``"binary"``: 0.0 / 1.0 (N,), for exactly two classes;
- ``"sparse"``: the class index as a float (N,);  ``"input"``: the images themselves (autoencoders);
- ``None``: images alone (for ``predict``).

With ``ImageDataGenerator(validation_split=v)``, ``subset="validation"`` takes the first
``int(v * n)`` files of each class and ``subset="training"`` the rest, as Keras does. Shuffling and
augmentation are those of ``flow``: reproducible per (seed, epoch, batch), and resumable.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import arguments
from .iterator import BatchIterator
from .keras_images import COLOR_MODES, img_to_array, load_img

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
_OWNER = "ImageDataGenerator.flow_from_directory"


class DirectoryIterator(BatchIterator):
    def __init__(self, directory, image_data_generator, target_size=(256, 256),
                 color_mode: str = "rgb", classes=None, class_mode: str | None = "categorical",
                 batch_size: int = 32, shuffle: bool = True, seed: int | None = None,
                 follow_links: bool = False, subset: str | None = None, interpolation: str = "nearest",
                 keep_aspect_ratio: bool = False):
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"{_OWNER}: {root}: no such folder")
        arguments.one_of(color_mode, "color_mode", _OWNER, tuple(COLOR_MODES))
        if class_mode not in CLASS_MODES:
            raise ValueError(f"{_OWNER}: class_mode must be one of {list(CLASS_MODES)}, got {class_mode!r}")
        if subset is not None:
            arguments.one_of(subset, "subset", _OWNER, ("training", "validation"))
            if not image_data_generator.validation_split:
                raise ValueError(f"{_OWNER}: subset={subset!r} needs ImageDataGenerator(validation_split=...)")
        self.follow_links = arguments.boolean(follow_links, "follow_links", _OWNER)
        self.directory, self.target_size = root, _target_size(target_size)
        self.color_mode, self.class_mode = color_mode, class_mode
        self.interpolation, self.keep_aspect_ratio = interpolation, keep_aspect_ratio
        names = _class_names(root, classes)
        self.class_indices = {name: i for i, name in enumerate(names)}
        self.num_classes = len(names)
        if class_mode == "binary" and len(names) != 2:
            raise ValueError(f"{_OWNER}: class_mode='binary' needs exactly 2 class folders in {root}, found "
                             f"{len(names)}: {names}; use 'categorical' or 'sparse' for more")
        self.filenames, labels = [], []
        for name in names:
            files = self.image_files(root / name)
            cut = int(image_data_generator.validation_split * len(files))
            files = files[:cut] if subset == "validation" else files[cut:] if subset == "training" else files
            self.filenames += [f"{name}/{file}" for file in files]
            labels += [self.class_indices[name]] * len(files)
        self.classes = np.array(labels, dtype=np.int64)
        self.samples = len(self.filenames)
        print(f"Found {self.samples} images belonging to {len(names)} classes.")
        if self.samples == 0:
            raise ValueError(f"{_OWNER}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {root}")
        super().__init__(image_data_generator, self.samples, batch_size, shuffle, seed, _OWNER)

    def image_files(self, folder: Path) -> list[str]:
        """The image files below ``folder``, relative to it with ``/``, in sorted order."""
        found = []
        for here, folders, files in os.walk(folder, followlinks=self.follow_links):
            folders.sort()
            relative = Path(here).relative_to(folder)
            found += [(relative / file).as_posix() for file in sorted(files) if file.lower().endswith(IMAGE_SUFFIXES)]
        return found

    @property
    def filepaths(self) -> list[str]:
        return [os.path.join(self.directory, name) for name in self.filenames]

    def read(self, rows):
        images = np.stack([img_to_array(load_img(self.directory / self.filenames[i], color_mode=self.color_mode,
                                                 target_size=self.target_size, interpolation=self.interpolation,
                                                 keep_aspect_ratio=self.keep_aspect_ratio))
                           for i in rows])
        indices = self.classes[rows]
        if self.class_mode == "categorical":
            labels = np.eye(len(self.class_indices), dtype=np.float32)[indices]
        elif self.class_mode in ("binary", "sparse"):
            labels = indices.astype(np.float32)
        else:
            labels = None
        return images, labels

    def part_of(self, index: int, part):
        batch, rows, size = super().part_of(index, part)
        if self.class_mode == "input":  # the target is the (augmented) input itself
            return (batch, batch.copy()), rows, size
        return batch, rows, size


def _class_names(root: Path, classes) -> list[str]:
    if classes is None:
        return sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) for name in classes):
        raise TypeError(f"{_OWNER}: classes must be a list of sub-folder names, got {classes!r}")
    missing = [name for name in classes if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{_OWNER}: class folders {missing} are not in {root}")
    return list(classes)


def _target_size(value) -> tuple[int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in value)):
        raise ValueError(f"{_OWNER}: target_size must be (height, width) in pixels, got {value!r}")
    return int(value[0]), int(value[1])
