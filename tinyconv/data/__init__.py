"""Data: the cell-image simulator, data sets on disk, and Keras-style augmentation.

- ``cells``: simulated fluorescence microscopy with 18 visual labels (``cells.generate``).
- ``load_dataset`` / ``save_dataset``: a data set is a folder of ``images.npy``, ``labels.npy``,
  ``meta.json``; ``split`` makes the 80/10/10 train/valid/test split.
- ``ImageDataGenerator``: random affine augmentation and standardisation, with ``flow``.
- ``baseline``: the global-statistics logistic regression a CNN must beat.
"""
from . import cells
from .augment import ImageDataGenerator, NumpyArrayIterator
from .io import Dataset, load_dataset, save_dataset, split

__all__ = ["cells", "ImageDataGenerator", "NumpyArrayIterator", "Dataset", "load_dataset", "save_dataset", "split"]
