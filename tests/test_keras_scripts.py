"""Keras scripts of the kinds tutorials are made of, run on tinyconv after replacing ``keras`` in
their imports and nothing else.

Each script below is written for Keras (``import keras``, ``from tensorflow.keras.layers import ...``,
``from keras import backend as K``); ``as_tinyconv`` rewrites its import lines only, and the test runs
it. Data are small offline arrays of the shapes and dtypes the tutorials load (MNIST-like digits,
CIFAR-like colour images, cats-vs-dogs-like binary labels). Each script checks itself: the loss
falls, and ``count_params`` equals the count by Keras's rule, worked out by hand in the script's
comment (conv: (k*k*c_in + 1) * filters; dense: (in + 1) * units).
"""
import re
import textwrap
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.training

KERAS = r"(?:tensorflow\.keras|tf\.keras|keras)"
BARE_IMPORT = re.compile(rf"^(\s*)(?:import {KERAS}|from tensorflow import keras)\s*$", re.MULTILINE)
IMPORT_LINE = re.compile(rf"^(\s*)(import|from)\s+{KERAS}\b", re.MULTILINE)


def as_tinyconv(source: str) -> str:
    """The script with ``keras`` (also ``tensorflow.keras``) replaced by ``tinyconv`` in its imports:
    ``import keras`` keeps its name (``import tinyconv as keras``), as a reader would write it."""
    source = BARE_IMPORT.sub(lambda m: f"{m.group(1)}import tinyconv as keras", textwrap.dedent(source))
    return IMPORT_LINE.sub(lambda m: f"{m.group(1)}{m.group(2)} tinyconv", source)


def run(source: str, tmp_path, monkeypatch, **data) -> dict:
    monkeypatch.chdir(tmp_path)
    namespace = dict(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the deprecated generator methods say so
        exec(compile(as_tinyconv(source), "<keras script>", "exec"), namespace)
    return namespace


def digits(n: int, rng, size: int = 28):
    """MNIST-like: uint8 (n, 28, 28) images whose bright bar's row tells the digit."""
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 2 * k:2 * k + 6, 4:24] = 255
    return x, y.astype(np.uint8)


def colour_images(n: int, rng, classes: int = 10, size: int = 32):
    """CIFAR-like: uint8 (n, 32, 32, 3), labels (n, 1) as cifar10.load_data gives them."""
    y = rng.integers(0, classes, (n, 1))
    x = rng.integers(0, 80, (n, size, size, 3)).astype(np.uint8)
    for i, k in enumerate(y[:, 0]):
        x[i, :, :, k % 3] += np.uint8(40 + 15 * (k // 3))
    return x, y.astype(np.uint8)


MNIST_CONVNET = '''
import numpy as np
import keras
from keras import layers

num_classes = 10
input_shape = (28, 28, 1)
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.summary()
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=128, epochs=4, validation_split=0.1)
score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
# (3*3*1+1)*32 + (3*3*32+1)*64 + (5*5*64+1)*10
assert model.count_params() == 320 + 18496 + 16010
'''


def test_keras_3_mnist_convnet(tmp_path, monkeypatch, rng):
    (x_train, y_train), (x_test, y_test) = digits(400, rng), digits(100, rng)
    out = run(MNIST_CONVNET, tmp_path, monkeypatch, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    loss = out["history"].history["loss"]
    assert loss[-1] < loss[0]
    assert set(out["history"].history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert out["score"][1] > 0.3  # ten classes: chance is 0.1


SEQUENTIAL_ADD_SPARSE = '''
from tensorflow.keras.models import Sequential
from tensorflow.keras.layers import Conv2D, MaxPooling2D, Flatten, Dense, Dropout
from tensorflow.keras.optimizers import RMSprop
from tensorflow.keras import backend as K

assert K.image_data_format() == "channels_last"
x_train = x_train / 255.0
model = Sequential()
model.add(Conv2D(16, (3, 3), activation="relu", padding="same", input_shape=(32, 32, 3)))
model.add(MaxPooling2D((2, 2)))
model.add(Conv2D(32, (3, 3), activation="relu"))
model.add(MaxPooling2D(2))
model.add(Flatten())
model.add(Dense(64, activation="relu"))
model.add(Dense(10, activation="softmax"))
model.compile(optimizer=RMSprop(learning_rate=0.001), loss="sparse_categorical_crossentropy", metrics=["acc"])
history = model.fit(x_train, y_train, epochs=4, batch_size=32, validation_data=(x_train[:64], y_train[:64]),
                    verbose=2)
acc = history.history["acc"]
val_acc = history.history["val_acc"]
# (27+1)*16 + (144+1)*32 + (7*7*32+1)*64 + (64+1)*10
assert model.count_params() == 448 + 4640 + 100416 + 650
'''


def test_sequential_add_with_sparse_labels_rmsprop_and_acc(tmp_path, monkeypatch, rng):
    x_train, y_train = colour_images(320, rng)
    out = run(SEQUENTIAL_ADD_SPARSE, tmp_path, monkeypatch, x_train=x_train.astype("float32"), y_train=y_train)
    history = out["history"].history
    assert history["loss"][-1] < history["loss"][0]
    assert set(history) == {"loss", "acc", "val_loss", "val_acc"}
    assert history["acc"][-1] > history["acc"][0]


FUNCTIONAL_LOGITS = '''
import keras
from keras import layers

inputs = keras.Input(shape=(16, 16, 3))
x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
shortcut = x
x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
x = layers.add([x, shortcut])
y = layers.Conv2D(4, 1, activation="relu")(inputs)
x = layers.concatenate([x, y])
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(3)(x)
model = keras.Model(inputs, outputs, name="small_resnet")
model.compile(
    optimizer=keras.optimizers.Adam(1e-2),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
)
history = model.fit(x_train, y_train, batch_size=16, epochs=6, verbose=0)
results = model.evaluate(x_train, y_train, return_dict=True)
# (27+1)*8 + (72+1)*8 + (3+1)*4 + (12+1)*3
assert model.count_params() == 224 + 584 + 16 + 39
'''


def test_functional_api_with_add_concatenate_and_logits(tmp_path, monkeypatch, rng):
    x, y = colour_images(96, rng, classes=3, size=16)
    out = run(FUNCTIONAL_LOGITS, tmp_path, monkeypatch, x_train=x.astype("float32") / 255, y_train=y[:, 0])
    history = out["history"].history
    assert history["loss"][-1] < history["loss"][0]
    assert set(out["results"]) == {"loss", "acc"}


KERAS_2_BINARY_GENERATOR = '''
from keras.preprocessing.image import ImageDataGenerator
from keras.models import Sequential
from keras.layers import Conv2D, MaxPooling2D, Activation, Dropout, Flatten, Dense
from keras.callbacks import EarlyStopping, CSVLogger
from keras import optimizers

model = Sequential()
model.add(Conv2D(8, (3, 3), input_shape=(24, 24, 3)))
model.add(Activation("relu"))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Flatten())
model.add(Dense(16))
model.add(Activation("relu"))
model.add(Dropout(0.5))
model.add(Dense(1))
model.add(Activation("sigmoid"))
model.compile(loss="binary_crossentropy", optimizer=optimizers.SGD(lr=0.05, momentum=0.9, decay=1e-4),
              metrics=["accuracy"])
train_datagen = ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True)
test_datagen = ImageDataGenerator(rescale=1.0 / 255)
train_generator = train_datagen.flow(x_train, y_train, batch_size=16)
validation_generator = test_datagen.flow(x_val, y_val, batch_size=16)
history = model.fit_generator(train_generator, steps_per_epoch=len(x_train) // 16, epochs=5,
                              validation_data=validation_generator, validation_steps=2,
                              callbacks=[EarlyStopping(monitor="val_loss", patience=3), CSVLogger("log.csv")],
                              workers=4, use_multiprocessing=True)
probabilities = model.predict_generator(test_datagen.flow(x_val, batch_size=16, shuffle=False))
# (27+1)*8 + (11*11*8+1)*16 + (16+1)*1
assert model.count_params() == 224 + 15504 + 17
'''


def test_keras_2_binary_classifier_on_generators(tmp_path, monkeypatch, rng):
    y = rng.integers(0, 2, 160)
    x = rng.integers(0, 120, (160, 24, 24, 3)).astype("float32")
    x[y == 1, 6:18, 6:18, :] = 255  # "dogs" have a bright square
    out = run(KERAS_2_BINARY_GENERATOR, tmp_path, monkeypatch, x_train=x[:128], y_train=y[:128],
              x_val=x[128:], y_val=y[128:])
    history = out["history"].history
    assert history["loss"][-1] < history["loss"][0]
    assert out["probabilities"].shape == (32, 1)
    assert (tmp_path / "log.csv").read_text().startswith("epoch,accuracy,loss,val_accuracy,val_loss")


CIFAR_CNN_ONE_HOT = '''
import tensorflow.keras as keras
from tensorflow.keras import layers, models
from tensorflow.keras.utils import to_categorical
from tensorflow.keras.regularizers import l2

train_images, test_images = train_images / 255.0, test_images / 255.0
train_labels = to_categorical(train_labels)
model = models.Sequential()
model.add(layers.Conv2D(16, (3, 3), activation="relu", input_shape=(32, 32, 3)))
model.add(layers.BatchNormalization())
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(16, (3, 3), activation="relu"))
model.add(layers.AveragePooling2D((2, 2)))
model.add(layers.Flatten())
model.add(layers.Dense(32, activation="relu", kernel_regularizer=l2(1e-4)))
model.add(layers.Dense(10, activation="softmax"))
model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3), loss=keras.losses.categorical_crossentropy,
              metrics=[keras.metrics.categorical_accuracy])
history = model.fit(train_images, train_labels, epochs=4, batch_size=32)
test_loss, test_acc = model.evaluate(test_images, to_categorical(test_labels, 10), verbose=2)
# (27+1)*16 + 4*16 (BatchNorm) + (144+1)*16 + (6*6*16+1)*32 + (32+1)*10
assert model.count_params() == 448 + 64 + 2320 + 18464 + 330
'''


def test_cifar_cnn_with_loss_and_metric_functions(tmp_path, monkeypatch, rng):
    (train_images, train_labels), (test_images, test_labels) = colour_images(256, rng), colour_images(64, rng)
    out = run(CIFAR_CNN_ONE_HOT, tmp_path, monkeypatch, train_images=train_images, train_labels=train_labels,
              test_images=test_images, test_labels=test_labels)
    history = out["history"].history
    assert history["loss"][-1] < history["loss"][0]
    assert "categorical_accuracy" in history


def test_the_rewrite_touches_imports_only():
    source = 'import keras\nfrom tensorflow.keras.layers import Dense\nprint("keras")\nkeras.layers.Dense(1)\n'
    assert as_tinyconv(source) == ('import tinyconv as keras\nfrom tinyconv.layers import Dense\nprint("keras")\n'
                                   'keras.layers.Dense(1)\n')
    assert as_tinyconv("import tensorflow.keras as keras\n") == "import tinyconv as keras\n"


SAVE_AND_LOAD = '''
import numpy as np
from tensorflow import keras
from tensorflow.keras.models import load_model

model = keras.Sequential([
    keras.layers.Dense(16, activation="relu", input_shape=(8,)),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, epochs=3, batch_size=16, verbose=0,
                    callbacks=[keras.callbacks.ModelCheckpoint("best.keras", monitor="loss", save_best_only=True)])
model.save("my_model.keras")
restored = load_model("my_model.keras")
np.testing.assert_allclose(restored.predict(x), model.predict(x), rtol=1e-6)
best = load_model("best.keras")
restored.fit(x, y, epochs=1, verbose=0)
# (8+1)*16 + (16+1)*3
assert model.count_params() == 144 + 51
'''


def test_save_and_load_model(tmp_path, monkeypatch, rng):
    x = rng.standard_normal((48, 8)).astype("float32")
    out = run(SAVE_AND_LOAD, tmp_path, monkeypatch, x=x, y=(x[:, 0] > 0).astype(int) + (x[:, 1] > 0))
    assert out["history"].history["loss"][-1] < out["history"].history["loss"][0]
    assert (tmp_path / "my_model.keras").exists() and (tmp_path / "best.keras").exists()


FLOW_FROM_DIRECTORY = '''
from keras.preprocessing.image import ImageDataGenerator
from keras.models import Sequential
from keras.layers import Conv2D, MaxPooling2D, Flatten, Dense
from keras.callbacks import ReduceLROnPlateau

datagen = ImageDataGenerator(rescale=1.0 / 255, validation_split=0.25, rotation_range=10, horizontal_flip=True)
train_generator = datagen.flow_from_directory(data_dir, target_size=(16, 16), batch_size=8,
                                              class_mode="categorical", subset="training")
validation_generator = datagen.flow_from_directory(data_dir, target_size=(16, 16), batch_size=8,
                                                   class_mode="categorical", subset="validation")
model = Sequential([
    Conv2D(8, (3, 3), activation="relu", input_shape=(16, 16, 3)),
    MaxPooling2D(2, 2),
    Flatten(),
    Dense(train_generator.num_classes, activation="softmax"),
])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
history = model.fit(train_generator, epochs=4, validation_data=validation_generator,
                    callbacks=[ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)])
# (27+1)*8 + (7*7*8+1)*3
assert model.count_params() == 224 + 1179
'''


def test_flow_from_directory_script(tmp_path, monkeypatch, rng):
    from PIL import Image
    for k, name in enumerate(["red", "green", "blue"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 90, (20, 20, 3)).astype(np.uint8)
            pixels[..., k] += 150
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    out = run(FLOW_FROM_DIRECTORY, tmp_path, monkeypatch, data_dir=str(tmp_path / "data"))
    history = out["history"].history
    assert history["loss"][-1] < history["loss"][0] and "learning_rate" in history
    assert out["train_generator"].samples == 18 and out["validation_generator"].samples == 6
