"""Keras's module name for models (``keras.models`` -> ``tinyconv.models``); they are written in
``tinyconv/model.py``."""
from .model import Model, Sequential

__all__ = ["Model", "Sequential"]
