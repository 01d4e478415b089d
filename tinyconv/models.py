"""Keras's module name for models (``keras.models`` -> ``tinyconv.models``); they are written in
``tinyconv/model.py``, their files in ``tinyconv/saving.py``."""
from .model import Model, Sequential
from .saving import load_model

__all__ = ["Model", "Sequential", "load_model"]
