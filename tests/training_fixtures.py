"""A tiny model and a learnable tiny dataset, shared by the training, callback and checkpoint tests."""
import numpy as np

import tinyconv
from tinyconv import Model
from tinyconv.layers import Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D, reset_names
from tinyconv.optimizers import Adam


def tiny_model(optimizer=None, n_labels: int = 3, dropout_seed=None, seed: int = 0) -> Model:
    """Conv(4) - LeakyReLU - Pool - Flatten - Dropout - Dense(sigmoid) on 8x8x2 images, compiled."""
    tinyconv.set_seed(seed)
    reset_names()
    inputs = Input((8, 8, 2))
    x = Conv2D(4, (3, 3), padding="same")(inputs)
    x = LeakyReLU()(x)
    x = MaxPooling2D((2, 2))(x)
    x = Flatten()(x)
    x = Dropout(0.25, seed=dropout_seed)(x)
    outputs = Dense(n_labels, activation="sigmoid")(x)
    model = Model(inputs, outputs)
    model.compile(optimizer or Adam(learning_rate=0.01), "binary_crossentropy", metrics=["accuracy"])
    return model


def tiny_data(n: int = 36, seed: int = 1):
    """Images whose labels are simple visual facts: bright channel 0, bright channel 1, bright top half."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 2)).astype(np.float32) * 0.5
    y = rng.integers(0, 2, size=(n, 3)).astype(np.float32)
    x[y[:, 0] == 1, :, :, 0] += 0.4
    x[y[:, 1] == 1, :, :, 1] += 0.4
    x[y[:, 2] == 1, :4] += 0.3
    return x, y
