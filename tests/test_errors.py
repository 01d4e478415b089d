"""Bad input fails early with a message naming the layer or file, the expected and the actual."""
import numpy as np
import pytest

import tinyconv
from tinyconv.layers import Activation, Conv2D, Dense, Input, LeakyReLU, MaxPooling2D
from tinyconv.losses import BinaryCrossentropy
from tinyconv.zoo import seed_cnn

pytestmark = pytest.mark.errors


def built_conv():
    layer = Conv2D(4, 3, name="features")
    layer.build((8, 8, 3))
    return layer


def test_wrong_channel_count_into_a_built_layer():
    with pytest.raises(ValueError, match=r"'features'.*expected input of shape \(batch, 8, 8, 3\), got \(2, 8, 8, 1\)"):
        built_conv().forward(np.zeros((2, 8, 8, 1), np.float32))


def test_wrong_rank_into_a_built_layer():
    with pytest.raises(ValueError, match=r"'features'.*got \(8, 8, 3\)"):
        built_conv().forward(np.zeros((8, 8, 3), np.float32))


def test_non_4d_batch_into_a_model():
    model = seed_cnn((8, 8, 3))
    with pytest.raises(ValueError, match=r"'input_layer'.*expected input of shape \(batch, 8, 8, 3\), got \(8, 8, 3\)"):
        model.forward(np.zeros((8, 8, 3), np.float32))


def test_integer_array_into_a_layer():
    with pytest.raises(TypeError, match=r"'features'.*floating-point.*int64"):
        built_conv().forward(np.zeros((2, 8, 8, 3), np.int64))


def test_conv_on_a_flat_input():
    with pytest.raises(ValueError, match=r"Conv2D.*expected input of shape \(batch, height, width, channels\), got \(batch, 10\)"):
        Conv2D(2, 3, name="c")(Input((10,)))


def test_dense_on_an_image_input_asks_for_flatten():
    with pytest.raises(ValueError, match="Flatten"):
        Dense(2)(Input((4, 4, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_into_the_loss(bad):
    y_pred = np.full((2, 3), 0.5)
    y_pred[1, 2] = bad
    with pytest.raises(ValueError, match="BinaryCrossentropy.*NaN or inf"):
        BinaryCrossentropy().forward(y_pred, np.zeros((2, 3)))


@pytest.mark.parametrize("label", [-0.1, 1.5, np.nan])
def test_labels_outside_unit_interval(label):
    y_true = np.zeros((2, 3))
    y_true[0, 1] = label
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        BinaryCrossentropy(from_logits=True).forward(np.zeros((2, 3)), y_true)


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        BinaryCrossentropy().forward(np.full((2, 3), 0.5), np.zeros((2, 4)))


def test_probabilities_outside_unit_interval_suggest_logits():
    with pytest.raises(ValueError, match="from_logits=True"):
        BinaryCrossentropy().forward(np.full((2, 3), 2.0), np.zeros((2, 3)))


def test_set_weights_with_wrong_shapes():
    layer = built_conv()
    with pytest.raises(ValueError, match=r"'features'.*'kernel' expected shape \(3, 3, 3, 4\), got \(3, 3, 1, 4\)"):
        layer.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])
    with pytest.raises(ValueError, match="expected 2 weight arrays, got 1"):
        layer.set_weights([np.zeros((3, 3, 3, 4))])


def test_load_weights_that_do_not_fit_names_the_layer(tmp_path):
    seed_cnn((8, 8, 3)).save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"w\.npz.*layer 1 'conv2d(_\d+)?'.*\(3, 3, 1, 64\).*\(3, 3, 3, 64\)"):
        seed_cnn((8, 8, 1)).load_weights(tmp_path / "w.npz")


def test_truncated_weights_file_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    seed_cnn((8, 8, 3)).save_weights(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"w\.npz.*truncated or corrupt"):
        seed_cnn((8, 8, 3)).load_weights(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        seed_cnn((8, 8, 3)).load_weights(tmp_path / "missing.npz")


@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3, padding="full"), lambda: MaxPooling2D(padding="SAME")])
def test_unknown_padding(make):
    with pytest.raises(ValueError, match=r"padding must be 'valid' or 'same', got"):
        make()


@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3, activation="swishy"), lambda: Activation("tanhh"),
                                  lambda: Dense(3, activation="softmaxx")])
def test_unknown_activation(make):
    with pytest.raises(ValueError, match=r"unknown activation '\w+'; expected one of"):
        make()


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="kernel_size|window size"):
        Conv2D(2, (3, 0))
    with pytest.raises(ValueError, match="filters"):
        Conv2D(0, 3)
    with pytest.raises(ValueError, match="negative slope"):
        LeakyReLU(alpha=-1)
    with pytest.raises(ValueError, match="unknown initializer"):
        Dense(2, kernel_initializer="ones_please").build((3,))
    with pytest.raises(ValueError, match="floatx"):
        tinyconv.set_floatx("float16")


# --- call arguments of fit / evaluate / predict: refused before anything changes ----------------------

def _compiled_tiny_model():
    from training_fixtures import tiny_data, tiny_model
    return tiny_model(), *tiny_data(n=12)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, r"fit: batch_size must be >= 1, got 0"),
    ({"batch_size": -1}, ValueError, r"fit: batch_size must be >= 1, got -1"),
    ({"batch_size": 8.0}, TypeError, r"fit: batch_size must be an int, got float 8\.0"),
    ({"batch_size": True}, TypeError, r"fit: batch_size must be an int, got bool"),
    ({"epochs": -3}, ValueError, r"fit: epochs must be >= 0, got -3"),
    ({"epochs": 2.5}, TypeError, r"fit: epochs must be an int"),
    ({"epochs": 2, "initial_epoch": 5}, ValueError, r"initial_epoch \(5\) must be below epochs \(2\)"),
    ({"epochs": 2, "initial_epoch": 2}, ValueError, r"initial_epoch \(2\) must be below epochs \(2\)"),
    ({"initial_epoch": -1}, ValueError, r"fit: initial_epoch must be >= 0"),
    ({"steps_per_epoch": 0}, ValueError, r"fit: steps_per_epoch must be >= 1, got 0"),
    ({"steps_per_epoch": 1.5}, TypeError, r"fit: steps_per_epoch must be an int"),
    ({"shuffle": "no"}, TypeError, r"fit: shuffle must be True or False, got str 'no'"),
    ({"shuffle": 0}, TypeError, r"fit: shuffle must be True or False"),
    ({"verbose": 3}, ValueError, r"fit: verbose must be 0 \(silent\), 1 .*got 3"),
    ({"verbose": "loud"}, ValueError, r"fit: verbose must be .*got 'loud'"),
    ({"stop_on_nan": None}, TypeError, r"fit: stop_on_nan must be True or False"),
])
def test_bad_fit_arguments_are_refused_before_training(kwargs, error, message):
    model, x, y = _compiled_tiny_model()
    before = [w.copy() for w in model.get_weights()]
    random_state = tinyconv.random.get_state()
    with pytest.raises(error, match=message):
        model.fit(x, y, **{"verbose": 0, **kwargs})
    assert model.optimizer.iterations == 0 and tinyconv.random.get_state() == random_state
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_numpy_integers_are_accepted_as_fit_arguments():
    model, x, y = _compiled_tiny_model()
    history = model.fit(x, y, batch_size=np.int64(6), epochs=np.int32(2), initial_epoch=np.int64(1),
                        steps_per_epoch=np.int64(1), shuffle=np.bool_(False), verbose=0)
    assert history.epoch == [1] and model.optimizer.iterations == 1


@pytest.mark.parametrize("method", ["evaluate", "predict"])
@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-1, ValueError), (8.0, TypeError)])
def test_bad_batch_size_in_evaluate_and_predict(method, batch_size, error):
    model, x, y = _compiled_tiny_model()
    args = (x, y) if method == "evaluate" else (x,)
    with pytest.raises(error, match=f"{method}: batch_size must be"):
        getattr(model, method)(*args, batch_size=batch_size)
    with pytest.raises(ValueError, match=f"{method}: verbose must be"):
        getattr(model, method)(*args, verbose=-1)


def test_fit_on_a_list_of_images_says_to_stack_them():
    model, x, y = _compiled_tiny_model()
    with pytest.raises(TypeError, match=r"fit takes images as one NumPy array .*got a list of 12 items.*np\.stack"):
        model.fit(list(x), y)


def test_fit_on_a_flow_without_labels():
    from tinyconv.data import ImageDataGenerator
    model, x, y = _compiled_tiny_model()
    with pytest.raises(ValueError, match=r"fit got an iterator without labels \(NumpyArrayIterator with y=None\).*flow\(x, y\)"):
        model.fit(ImageDataGenerator().flow(x), verbose=0)

    class ImagesOnly:  # any other iterator of bare image batches
        def __len__(self):
            return 2

        def __next__(self):
            return x[:6]

    with pytest.raises(TypeError, match=r"each batch of the iterator must be a pair \(x_batch, y_batch\), "
                                        r"got ndarray of shape \(6, 8, 8, 2\)"):
        model.fit(ImagesOnly(), verbose=0)


@pytest.mark.parametrize("template, validation, message", [
    ("w-{val_loss:.3f}.npz", False, r"w-\{val_loss:\.3f\}\.npz' cannot be filled \(KeyError\('val_loss'\)\).*"
                                    r"\['loss', 'accuracy'\]"),
    ("w-{epoch:02d}-{auc}.npz", True, r"KeyError\('auc'\).*'val_accuracy'"),
    ("w-{loss:d}.npz", True, r"cannot be filled \(ValueError"),
    ("w-{}.npz", True, r"cannot be filled \(IndexError"),
])
def test_model_checkpoint_template_checked_before_training(tmp_path, template, validation, message):
    from tinyconv.callbacks import ModelCheckpoint
    model, x, y = _compiled_tiny_model()
    extra = {"validation_data": (x, y)} if validation else {}
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, verbose=0, callbacks=[ModelCheckpoint(tmp_path / template)], **extra)
    assert model.optimizer.iterations == 0 and list(tmp_path.iterdir()) == []


def test_model_checkpoint_template_that_fits_is_filled(tmp_path):
    from tinyconv.callbacks import ModelCheckpoint
    model, x, y = _compiled_tiny_model()
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[ModelCheckpoint(tmp_path / "w-{epoch:02d}-{val_loss:.3f}.npz")])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n[:5] for n in names] == ["w-01-", "w-02-"] and all(n.endswith(".npz") for n in names)


# --- weights files ------------------------------------------------------------------------------------

def test_load_weights_on_files_that_are_not_weights(tmp_path):
    from tinyconv import checkpoint
    model, x, y = _compiled_tiny_model()
    np.savez(tmp_path / "foreign.npz", np.zeros(3), weights=np.ones(2))
    np.save(tmp_path / "array.npy", np.zeros((3, 3)))
    checkpoint.save_checkpoint(tmp_path / "state.npz", model, epoch=0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"foreign\.npz: not a tinyconv weights file: its entry '(arr_0|weights)' is not named"):
        model.load_weights(tmp_path / "foreign.npz")
    with pytest.raises(ValueError, match=r"array\.npy: holds a single NumPy array \(\.npy\), not an \.npz archive"):
        model.load_weights(tmp_path / "array.npy")
    with pytest.raises(ValueError, match=r"state\.npz: this is a training checkpoint.*load_checkpoint"):
        model.load_weights(tmp_path / "state.npz")
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_weights_refuses_non_finite_values(tmp_path, bad):
    model, x, y = _compiled_tiny_model()
    arrays = model.weight_arrays()
    arrays["006/dense/kernel"][3, 1] = bad
    np.savez(tmp_path / "w.npz", **arrays)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"w\.npz: layer 6 'dense' 'kernel' holds NaN or inf values"):
        model.load_weights(tmp_path / "w.npz")
    for w0, w1 in zip(before, model.get_weights()):  # the layers before it were not set either
        np.testing.assert_array_equal(w0, w1)


def test_a_monitor_the_logs_never_hold_is_refused_before_training(tmp_path):
    from tinyconv.callbacks import EarlyStopping, ModelCheckpoint
    model, x, y = _compiled_tiny_model()
    for callback, owner in ((EarlyStopping(monitor="val_loss"), "EarlyStopping"),
                            (ModelCheckpoint(tmp_path / "w.npz", save_best_only=True), "ModelCheckpoint")):
        with pytest.raises(ValueError, match=rf"{owner}: monitor 'val_loss' will not be in this run's logs "
                                             r"\['loss', 'accuracy'\] \(val_ values need validation_data\)"):
            model.fit(x, y, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match=r"monitor 'val_auc' will not be in this run's logs \['loss', 'accuracy', "
                                         r"'val_loss', 'val_accuracy'\]"):
        model.fit(x, y, verbose=0, validation_data=(x, y), callbacks=[EarlyStopping(monitor="val_auc")])
    assert model.optimizer.iterations == 0 and list(tmp_path.iterdir()) == []


def test_fit_on_outputs_that_are_not_probabilities_suggests_logits():
    from tinyconv import Model
    from tinyconv.layers import Flatten
    inputs = Input((8, 8, 2))
    model = Model(inputs, Dense(3)(Flatten()(inputs)))  # no sigmoid: raw scores
    model.compile("sgd", "binary_crossentropy")
    x = np.random.default_rng(0).random((6, 8, 8, 2)).astype(np.float32) * 10
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"outputs must be probabilities in \[0, 1\].*from_logits=True"):
        model.fit(x, np.zeros((6, 3), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"outputs must be probabilities in \[0, 1\].*from_logits=True"):
        model.evaluate(x, np.zeros((6, 3), np.float32))
    assert model.optimizer.iterations == 0
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
