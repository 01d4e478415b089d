"""Ready-made models: the seed CNN that tinyconv's example trains."""
from __future__ import annotations

from .layers import Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D
from .model import Model


def seed_cnn(input_shape=(32, 32, 3), n_labels: int = 18, dropout: float = 0.5) -> Model:
    """Conv64-Conv64-Pool-Conv128-Conv128-Pool-Dense128-Dropout-Dense(sigmoid), all LeakyReLU(0.3).

    Built with the functional API exactly as the Keras tutorial writes it.
    """
    inputs = Input(shape=input_shape)
    x = Conv2D(filters=64, kernel_size=(3, 3), padding="same")(inputs)
    x = LeakyReLU()(x)
    x = Conv2D(filters=64, kernel_size=(3, 3), padding="same")(x)
    x = LeakyReLU()(x)
    x = MaxPooling2D((2, 2))(x)
    x = Conv2D(filters=128, kernel_size=(3, 3), padding="same")(x)
    x = LeakyReLU()(x)
    x = Conv2D(filters=128, kernel_size=(3, 3), padding="same")(x)
    x = LeakyReLU()(x)
    x = MaxPooling2D((2, 2))(x)
    x = Flatten()(x)
    x = Dense(units=128)(x)
    x = LeakyReLU()(x)
    x = Dropout(rate=dropout)(x)
    outputs = Dense(units=n_labels, activation="sigmoid")(x)
    return Model(inputs=inputs, outputs=outputs)
