"""Keras's module name for the callbacks (``keras.callbacks`` -> ``tinyconv.callbacks``); they are
written in ``tinyconv/training/callbacks.py`` (the learning-rate ones in ``training/learning_rate.py``)."""
from .training.callbacks import (Callback, CSVLogger, EarlyStopping, GradientNormLogger, ModelCheckpoint, ProgressBar,
                                 TerminateOnNaN, TrainingCheckpoint, read_csv_log)
from .training.learning_rate import LearningRateScheduler, ReduceLROnPlateau
from .training.tensorboard import TensorBoard

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "GradientNormLogger", "LearningRateScheduler",
           "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN", "TrainingCheckpoint",
           "read_csv_log"]
