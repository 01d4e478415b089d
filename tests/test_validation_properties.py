"""Random invalid constructor arguments: every layer, loss, optimizer, callback and ImageDataGenerator
refuses them with a ValueError or TypeError raised by tinyconv's own code (not deep inside NumPy).

Each row names a constructor, the valid arguments it needs, one argument to spoil and the kind of
value that argument takes; hypothesis draws values outside that kind (wrong type, NaN, inf, out of
range, wrong length...).
"""
import math
import os
import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinyconv
from tinyconv.callbacks import (CSVLogger, EarlyStopping, GradientNormLogger, ModelCheckpoint, ProgressBar,
                                TrainingCheckpoint)
from tinyconv.data import ImageDataGenerator
from tinyconv.layers import (Activation, BatchNormalization, Concatenate, Conv2D, Conv2DTranspose, Dense, Dropout,
                             Flatten, Input, LeakyReLU, MaxPooling2D, ReLU, Reshape, Softmax, Tanh, UpSampling2D)
from tinyconv.losses import BinaryCrossentropy, CategoricalCrossentropy
from tinyconv.optimizers import SGD, Adam

# Each row guards its own module's constructor: the test runs with every topic's subset.
pytestmark = [pytest.mark.errors, pytest.mark.conv, pytest.mark.pool, pytest.mark.activations, pytest.mark.dense,
              pytest.mark.dropout, pytest.mark.loss, pytest.mark.optim, pytest.mark.norm, pytest.mark.generative,
              pytest.mark.augment, pytest.mark.training, pytest.mark.graph]

PACKAGE = os.path.dirname(tinyconv.__file__)

# Values of the wrong type for anything numeric, boolean or textual.
junk = st.one_of(st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=3).map(tuple),
                 st.just(object()), st.binary(max_size=3), st.just({"a": 1}), st.complex_numbers())
not_finite = st.sampled_from([math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("inf")])
bools = st.sampled_from([True, False, np.True_])
too_big_for_a_float = st.sampled_from([10 ** 400, -10 ** 400])


def not_none(strategy):
    """For arguments where None is a valid value (``activation=None``, ``strides=None``...)."""
    return strategy.filter(lambda v: v is not None)


def numbers_outside(low=None, high=None, low_open=False, high_open=False):
    """Numbers (Python and NumPy floats and ints) outside the interval, plus NaN and inf."""
    parts = [not_finite, too_big_for_a_float]
    if low is not None:
        below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False)
        parts.append(below)
        as_float32 = below.filter(lambda v: v > -1e30).map(np.float32)
        parts.append(as_float32.filter(lambda v: v < low or (low_open and v == low)))
    if high is not None:
        above = st.floats(min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False)
        parts.append(above)
        parts.append(st.integers(math.ceil(high) + (0 if high_open else 1), 2 ** 62).map(np.int64))
    return st.one_of(*parts)


def number(low=None, high=None, low_open=False, high_open=False):
    return st.one_of(numbers_outside(low, high, low_open, high_open), junk, bools)


def integer(low=None, high=None):
    parts = [st.floats(allow_nan=True), junk, bools, st.floats(0.5, 10).map(np.float64)]
    if low is not None:
        parts.append(st.integers(max_value=low - 1))
        parts.append(st.integers(min_value=-1000, max_value=low - 1).map(np.int64))
    if high is not None:
        parts.append(st.integers(min_value=high + 1))
    return st.one_of(*parts)


def pair():
    bad_ints = st.integers(max_value=0)
    return st.one_of(bad_ints, st.floats(), junk.filter(lambda v: not (isinstance(v, tuple) and len(v) == 2
                                                                          and all(isinstance(i, int) and i > 0 for i in v))),
                     bools, st.tuples(bad_ints, st.integers(1, 3)), st.tuples(st.integers(1, 3), st.floats()),
                     st.lists(st.integers(1, 3), min_size=3, max_size=4), st.tuples(st.integers(1, 3), bools))


boolean = st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none())
path = st.one_of(st.integers(), st.floats(), st.none(), st.binary(max_size=4), st.just(""))
text = st.one_of(st.integers(), st.floats(), st.none(), bools, st.just(""))
shape = st.one_of(not_none(junk).filter(lambda v: not (isinstance(v, tuple) and v and all(isinstance(i, int) and i > 0 for i in v))),
                  st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(tuple),
                  st.lists(st.floats(1, 5), min_size=1, max_size=3).map(tuple), st.just(()))


def choice(*valid):
    return st.one_of(st.text(max_size=8).filter(lambda v: v not in valid), st.integers(), st.none(), bools)


ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "linear")


seed = st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=3), bools)
layer_name = st.one_of(st.integers(), st.floats(), st.just(""), bools)
shift = st.one_of(numbers_outside(0, 1e6), st.integers(max_value=-1), st.integers(min_value=10 ** 6 + 1),
                  st.text(max_size=4), st.none(), bools, st.just([]), st.lists(not_finite, min_size=1, max_size=3),
                  st.lists(st.text(max_size=2), min_size=1, max_size=2), st.just([[0.1, 0.2]]))
zoom = st.one_of(numbers_outside(0, 1, high_open=True), st.text(max_size=4), st.none(), bools,
                 st.tuples(st.floats(max_value=0), st.floats(1, 2)),
                 st.tuples(st.floats(1.5, 2), st.floats(0.5, 1.4)),
                 st.tuples(st.floats(0.5, 1), not_finite), st.lists(st.floats(0.5, 1.5), min_size=3, max_size=4))
reshape_target = st.one_of(shape.filter(lambda v: not (isinstance(v, tuple) and v.count(-1) == 1 and
                                                         all(isinstance(i, int) and (i > 0 or i == -1) for i in v))),
                           st.just((-1, -1)), st.just((2, -1, 3, -1)), st.just((-2, 4)))

# (constructor, valid arguments, argument to spoil, strategy of invalid values)
CASES = [
    *[(Conv2DTranspose, {"filters": 2, "kernel_size": 4}, argument, strategy) for argument, strategy in (
        ("filters", integer(low=1)), ("kernel_size", pair()), ("strides", pair()),
        ("padding", choice("valid", "same")), ("activation", not_none(choice(*ACTIVATIONS))),
        ("use_bias", boolean), ("kernel_initializer", choice("glorot_uniform", "he_normal", "zeros")),
        ("name", layer_name))],
    (UpSampling2D, {}, "size", pair()),
    (UpSampling2D, {}, "interpolation", choice("nearest")),
    (Reshape, {"target_shape": (4, -1)}, "target_shape", reshape_target),
    (Tanh, {}, "name", layer_name),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "filters", integer(low=1)),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "kernel_size", pair()),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "strides", pair()),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "padding", choice("valid", "same")),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "activation", not_none(choice(*ACTIVATIONS))),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "use_bias", boolean),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "kernel_initializer", choice("glorot_uniform", "he_normal", "zeros")),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "bias_initializer", choice("glorot_uniform", "he_normal", "zeros")),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "algorithm", choice("auto", "im2col", "winograd", "winograd_6x6", "winograd_2x2")),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "name", layer_name),
    (Conv2D, {"filters": 2, "kernel_size": 3}, "input_shape", shape),
    (MaxPooling2D, {}, "pool_size", pair()),
    (MaxPooling2D, {}, "strides", not_none(pair())),
    (MaxPooling2D, {}, "padding", choice("valid", "same")),
    (Dense, {"units": 2}, "units", integer(low=1)),
    (Dense, {"units": 2}, "activation", not_none(choice(*ACTIVATIONS))),
    (Dense, {"units": 2}, "use_bias", boolean),
    (Dense, {"units": 2}, "kernel_initializer", choice("glorot_uniform", "he_normal", "zeros")),
    (Dense, {"units": 2}, "name", layer_name),
    (Dropout, {"rate": 0.5}, "rate", number(0, 1, high_open=True)),
    (Dropout, {"rate": 0.5}, "seed", seed),
    (LeakyReLU, {}, "alpha", not_none(number(low=0))),
    (LeakyReLU, {}, "negative_slope", not_none(number(low=0))),
    (LeakyReLU, {}, "input_shape", shape),
    (ReLU, {}, "name", layer_name),
    (Softmax, {}, "axis", st.one_of(st.just(0), st.floats(), junk, bools)),
    (Concatenate, {}, "axis", st.one_of(st.just(0), st.floats(), junk, bools)),
    (BatchNormalization, {}, "axis", st.one_of(st.just(0), st.floats(), junk, bools)),
    (BatchNormalization, {}, "momentum", number(0, 1)),
    (BatchNormalization, {}, "epsilon", number(0, low_open=True)),
    (BatchNormalization, {}, "center", boolean),
    (BatchNormalization, {}, "scale", boolean),
    (BatchNormalization, {}, "gamma_initializer", choice("glorot_uniform", "he_normal", "ones", "zeros")),
    (BatchNormalization, {}, "moving_variance_initializer", choice("glorot_uniform", "he_normal", "ones", "zeros")),
    (BatchNormalization, {}, "name", layer_name),
    (CategoricalCrossentropy, {}, "from_logits", boolean),
    (GradientNormLogger, {"filename": "g.csv"}, "filename", path),
    (Activation, {"activation": "relu"}, "activation", not_none(choice(*ACTIVATIONS))),
    (Flatten, {}, "name", layer_name),
    (Flatten, {}, "input_shape", shape),
    (Input, {"shape": (8, 8, 3)}, "shape", shape),
    (Input, {"shape": (8, 8, 3)}, "name", layer_name),
    (BinaryCrossentropy, {}, "from_logits", boolean),
    (Adam, {}, "learning_rate", number(low=0, low_open=True)),
    (Adam, {}, "lr", not_none(number(low=0, low_open=True))),
    (Adam, {}, "beta_1", number(0, 1, high_open=True)),
    (Adam, {}, "beta_2", number(0, 1, high_open=True)),
    (Adam, {}, "epsilon", number(low=0, low_open=True)),
    (SGD, {}, "learning_rate", number(low=0, low_open=True)),
    (SGD, {}, "momentum", number(0, 1, high_open=True)),
    (SGD, {}, "nesterov", boolean),
    (EarlyStopping, {}, "monitor", text),
    (EarlyStopping, {}, "min_delta", number()),
    (EarlyStopping, {}, "patience", integer(low=0)),
    (EarlyStopping, {}, "verbose", integer(low=0)),
    (EarlyStopping, {}, "mode", choice("auto", "min", "max")),
    (EarlyStopping, {}, "restore_best_weights", boolean),
    (CSVLogger, {"filename": "log.csv"}, "filename", path),
    (CSVLogger, {"filename": "log.csv"}, "separator", st.one_of(st.text(min_size=2, max_size=4), st.just(""),
                                                                 st.integers(), st.none())),
    (CSVLogger, {"filename": "log.csv"}, "append", boolean),
    (ModelCheckpoint, {"filepath": "w.npz"}, "filepath", st.one_of(path, st.just("w-{epoch"), st.just("w}.npz"))),
    (ModelCheckpoint, {"filepath": "w.npz"}, "monitor", text),
    (ModelCheckpoint, {"filepath": "w.npz"}, "verbose", integer(low=0)),
    (ModelCheckpoint, {"filepath": "w.npz"}, "save_best_only", boolean),
    (ModelCheckpoint, {"filepath": "w.npz"}, "mode", choice("auto", "min", "max")),
    (TrainingCheckpoint, {"filepath": "c.npz"}, "filepath", path),
    (TrainingCheckpoint, {"filepath": "c.npz"}, "resume_command", not_none(text)),
    (ProgressBar, {}, "verbose", integer(low=0, high=2)),
    (ProgressBar, {}, "file", st.one_of(st.integers(), st.text(min_size=1, max_size=3))),
    *[(ImageDataGenerator, {}, flag, boolean) for flag in
      ("featurewise_center", "samplewise_center", "featurewise_std_normalization",
       "samplewise_std_normalization", "horizontal_flip", "vertical_flip")],
    (ImageDataGenerator, {}, "rotation_range", number(0, 360)),
    (ImageDataGenerator, {}, "shear_range", number(0, 360)),
    (ImageDataGenerator, {}, "width_shift_range", shift),
    (ImageDataGenerator, {}, "height_shift_range", shift),
    (ImageDataGenerator, {}, "zoom_range", zoom),
    (ImageDataGenerator, {}, "fill_mode", choice("nearest", "constant", "reflect", "wrap")),
    (ImageDataGenerator, {}, "cval", number()),
    (ImageDataGenerator, {}, "rescale", not_none(number())),
]


def raised_inside_tinyconv(error: BaseException) -> bool:
    """True when the innermost frame of the traceback is in tinyconv's own code."""
    last = traceback.extract_tb(error.__traceback__)[-1]
    return os.path.abspath(last.filename).startswith(PACKAGE + os.sep)


@pytest.mark.parametrize("make, valid, argument, invalid", CASES,
                         ids=[f"{make.__name__}-{argument}" for make, _, argument, _ in CASES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_invalid_constructor_arguments_are_refused_by_tinyconv(make, valid, argument, invalid, data):
    value = data.draw(invalid, label=argument)
    with pytest.raises((ValueError, TypeError)) as caught:
        make(**{**valid, argument: value})
    assert raised_inside_tinyconv(caught.value), \
        f"{make.__name__}({argument}={value!r}) failed outside tinyconv: {caught.value!r}"
    assert argument in str(caught.value), f"the message does not name {argument!r}: {caught.value}"


VALID = {make.__name__: (make, valid) for make, valid, _, _ in CASES}


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_valid_arguments_of_each_row_are_accepted(name):
    make, valid = VALID[name]
    make(**valid)  # so that each refusal above comes from the spoiled argument alone
