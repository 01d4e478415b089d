"""tinyconv: a small, fast, readable deep-learning engine on NumPy with explicit backprop."""
from .backend import get_array_module, get_device, set_device, to_device, to_numpy
from .config import floatx, set_floatx
from .random import set_seed

__version__ = "0.1.0"
from .model import Model, Sequential
