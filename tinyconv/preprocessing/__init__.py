"""Keras 2's module names for image preprocessing (``keras.preprocessing.image`` ->
``tinyconv.preprocessing.image``); the code lives in ``tinyconv/data/``."""
from . import image

__all__ = ["image"]
