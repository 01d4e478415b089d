"""Layers with Keras names, arguments and defaults; each file is one page of math."""
from .activations import Activation, LeakyReLU, ReLU, Sigmoid, Softmax
from .base import Input, InputLayer, Layer, SymbolicTensor, reset_names
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .merge import Add, Concatenate
from .normalization import BatchNormalization
from .pooling import GlobalAveragePooling2D, MaxPooling2D

__all__ = ["Activation", "Add", "BatchNormalization", "Concatenate", "Conv2D", "Dense", "Dropout", "Flatten",
           "GlobalAveragePooling2D", "Input", "InputLayer", "Layer", "LeakyReLU", "MaxPooling2D", "ReLU", "Sigmoid",
           "Softmax", "SymbolicTensor", "reset_names"]
