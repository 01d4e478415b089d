"""``keras.preprocessing.image`` -> ``tinyconv.preprocessing.image``: augmentation
(``tinyconv/data/augment.py``) and the image helpers (``tinyconv/data/keras_images.py``)."""
from ..data.augment import ImageDataGenerator, NumpyArrayIterator
from ..data.directory import DirectoryIterator
from ..data.keras_images import array_to_img, img_to_array, load_img

__all__ = ["DirectoryIterator", "ImageDataGenerator", "NumpyArrayIterator", "array_to_img", "img_to_array", "load_img"]
