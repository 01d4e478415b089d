"""Keras's module name for the callbacks (``keras.callbacks`` -> ``tinyconv.callbacks``); they are
written in ``tinyconv/training/callbacks.py``."""
from .training.callbacks import (Callback, CSVLogger, EarlyStopping, GradientNormLogger, ModelCheckpoint, ProgressBar,
                                 TerminateOnNaN, TrainingCheckpoint, read_csv_log)

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "GradientNormLogger", "ModelCheckpoint", "ProgressBar",
           "TerminateOnNaN", "TrainingCheckpoint", "read_csv_log"]
