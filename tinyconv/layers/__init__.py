"""Layers with Keras names, arguments and defaults; each file is one page of math."""
from .activations import Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .average_pooling import AveragePooling2D
from ..config import reset_names
from .base import Input, InputLayer, Layer, SymbolicTensor
from .conv import Conv2D
from .conv_transpose import Conv2DTranspose
from .dense import Dense, Flatten
from .dropout import Dropout
from .merge import Add, Concatenate, add, concatenate
from .normalization import BatchNormalization
from .pooling import GlobalAveragePooling2D, MaxPooling2D
from .reshape import Reshape
from .standardization import Normalization, Rescaling
from .upsampling import UpSampling2D

__all__ = ["Activation", "Add", "AveragePooling2D", "BatchNormalization", "Concatenate", "Conv2D", "Conv2DTranspose", "Dense",
           "Dropout", "Flatten", "GlobalAveragePooling2D", "Input", "InputLayer", "Layer", "LeakyReLU",
           "MaxPooling2D", "Normalization", "ReLU", "Rescaling", "Reshape", "Sigmoid", "Softmax", "SymbolicTensor", "Tanh", "UpSampling2D",
           "add", "concatenate", "reset_names"]
