"""Keras's module name for its utilities (``keras.utils`` -> ``tinyconv.utils``): ``to_categorical``,
the image helpers and ``set_random_seed``; each is written where its subject lives."""
from .data.keras_images import array_to_img, img_to_array, load_img
from .data.labels import to_categorical
from .random import set_seed as set_random_seed

__all__ = ["array_to_img", "img_to_array", "load_img", "set_random_seed", "to_categorical"]
