"""Data: the cell-image simulator, data sets on disk, your own images, and Keras-style augmentation.

- ``cells``: simulated fluorescence microscopy with 18 visual labels (``cells.generate``).
- ``load_dataset`` / ``save_dataset``: a data set is a folder of ``images.npy``, ``labels.npy``,
  ``meta.json``; ``split`` makes the 80/10/10 train/valid/test split.
- ``load_images``: a folder of PNG/JPEG/TIFF files and a labels CSV, as the same ``Dataset``.
- ``crop_cells``: single-cell crops and measurements from a field of view and its label mask.
- ``ImageDataGenerator``: random affine augmentation and standardisation, with ``flow``.
- ``baseline``: the global-statistics logistic regression a CNN must beat.
"""
from . import cells
from .augment import ImageDataGenerator, NumpyArrayIterator
from .crops import crop_cells
from .images import load_images
from .io import Dataset, load_dataset, save_dataset, split

__all__ = ["cells", "ImageDataGenerator", "NumpyArrayIterator", "Dataset", "load_dataset", "save_dataset", "split",
           "load_images", "crop_cells"]
