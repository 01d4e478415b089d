"""tinyconv: a small, fast, readable deep-learning engine on NumPy with explicit backprop."""
from .kernels.cpu_tuning import tune_process

# Once, before NumPy's first product and numba's first thread: what it changes and why is listed
# in kernels/cpu_tuning.py (idle threads sleep, OpenBLAS on one thread, freed memory kept).
tune_process()

from .backend import get_array_module, get_device, set_device, to_device, to_numpy
from .config import floatx, set_floatx
from .random import set_seed

__version__ = "0.1.0"
from .model import Model, Sequential

# Keras's module names, so that ``import tinyconv as keras`` reads as Keras: keras.layers.Dense,
# keras.Input, keras.optimizers.RMSprop, keras.utils.to_categorical, ...
from . import callbacks, layers, losses, metrics, models, optimizers, preprocessing, regularizers, saving, utils
from .layers import Input
