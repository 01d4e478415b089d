"""Calls out of order, unbuilt objects and the loss pitfalls Keras warns about: each names the
object and the missing step or the fix, and changes nothing (each test fails on the bare
TypeError, IndexError or silent no-op it replaces)."""
import warnings

import numpy as np
import pytest

import tinyconv
from tinyconv import Model, Sequential, callbacks
from tinyconv.layers import Activation, Dense, Flatten, Input
from tinyconv.losses import BinaryCrossentropy, CategoricalCrossentropy

pytestmark = [pytest.mark.errors, pytest.mark.training]


@pytest.mark.loss
@pytest.mark.parametrize("loss", [CategoricalCrossentropy(), CategoricalCrossentropy(from_logits=True),
                                  BinaryCrossentropy(), BinaryCrossentropy(from_logits=True)])
def test_a_loss_backward_before_forward_names_the_missing_step(loss):
    with pytest.raises(RuntimeError, match=rf"{type(loss).__name__}\(from_logits={loss.from_logits}\): backward "
                                           r"was called before forward; call forward\(y_pred, y_true\) first"):
        loss.backward()


@pytest.mark.model
@pytest.mark.parametrize("call", ["summary", "count_params", "save_weights", "load_weights"])
def test_an_unbuilt_sequential_says_it_is_built_by_its_first_batch(call, tmp_path):
    model = Sequential([Flatten(), Dense(2)])
    arguments = [tmp_path / "w.npz"] if "weights" in call else []
    with pytest.raises(ValueError, match=rf"model 'sequential\w*': {call} needs the model built, and it has no "
                                         r"Input yet.*call fit, predict or forward once first"):
        getattr(model, call)(*arguments)
    assert not (tmp_path / "w.npz").exists()


@pytest.mark.model
def test_a_sequential_without_input_compiles_and_trains_built_by_its_first_batch():
    """Keras's way; this used to raise IndexError at compile."""
    tinyconv.set_seed(0)
    model = Sequential([Flatten(), Dense(2, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((32, 4, 4, 1)).astype(np.float32)
    y = np.stack([x[:, :2].mean((1, 2, 3)) > x[:, 2:].mean((1, 2, 3))] * 2, axis=1).astype(np.float32)
    history = model.fit(x, y, batch_size=8, epochs=30, verbose=0)
    assert model.input_shape == (None, 4, 4, 1) and model.count_params() == 16 * 2 + 2
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.05
    assert model.fuse_output  # the sigmoid was seen at compile, before the model was built


@pytest.mark.model
def test_compile_on_an_empty_model_and_set_weights_on_an_unbuilt_layer_name_the_step():
    with pytest.raises(ValueError, match=r"model 'sequential\w*' has no layers: add them before compile"):
        Sequential().compile("adam", "binary_crossentropy")
    with pytest.raises(RuntimeError, match=r"layer 'dense\w*' \(Dense\): set_weights before the layer is built"):
        Dense(2).set_weights([np.zeros((3, 2)), np.zeros(2)])


def test_a_refused_compile_changes_nothing():
    inputs = Input((3,))
    model = Model(inputs, Dense(2, activation="sigmoid")(inputs))
    model.compile("sgd", "binary_crossentropy")
    before = (model.optimizer, model.loss, model.metrics, model.fuse_output)
    with pytest.raises(ValueError, match="unknown metric .auc."):
        model.compile("adam", "categorical_crossentropy", metrics=["auc"])
    assert (model.optimizer, model.loss, model.metrics, model.fuse_output) == before


@pytest.mark.loss
@pytest.mark.parametrize("loss", ["categorical_crossentropy", "binary_crossentropy"])
@pytest.mark.parametrize("written", ["dense", "layer"])
def test_a_softmax_over_one_unit_is_refused_naming_the_layer_and_the_fix(loss, written):
    """Its output is 1 for every input: loss 0 and accuracy 1 forever with categorical cross-entropy."""
    inputs = Input((3,))
    outputs = Dense(1, activation="softmax")(inputs) if written == "dense" else Activation("softmax")(Dense(1)(inputs))
    model = Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"layer '\w+' ends in a softmax over 1 unit.*Dense\(1, "
                                         r"activation='sigmoid'\) with binary_crossentropy"):
        model.compile("adam", loss)
    assert model.optimizer is None


@pytest.mark.loss
@pytest.mark.parametrize("activation, loss", [("sigmoid", BinaryCrossentropy(from_logits=True)),
                                              ("softmax", CategoricalCrossentropy(from_logits=True)),
                                              ("sigmoid", CategoricalCrossentropy(from_logits=True))])
def test_from_logits_after_a_final_activation_is_warned_about(activation, loss):
    inputs = Input((3,))
    model = Model(inputs, Dense(4, activation=activation, name="scores")(inputs))
    with pytest.warns(UserWarning, match=rf"from_logits=True\) expects raw scores, but layer 'scores' already "
                                         rf"applies a {activation}.*drop the {activation} from the layer"):
        model.compile("adam", loss)
    inputs = Input((3,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Model(inputs, Dense(4, name="raw")(inputs)).compile("adam", loss)  # raw scores: no warning


def categorical_model():
    tinyconv.set_seed(0)
    inputs = Input((4, 4, 1))
    model = Model(inputs, Dense(3, activation="softmax")(Flatten()(inputs)))
    model.compile("adam", "categorical_crossentropy")
    return model


@pytest.mark.loss
@pytest.mark.parametrize("broken", ["all zero", "multi-hot"])
def test_categorical_labels_that_are_not_one_class_per_row_are_warned_about_once(broken):
    from tinyconv.data import ImageDataGenerator
    x = np.random.default_rng(0).random((12, 4, 4, 1)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    y[5] = 0 if broken == "all zero" else [1, 1, 0]
    model = categorical_model()
    for data in [(x, y), (ImageDataGenerator().flow(x, y, batch_size=4, shuffle=False),)]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            model.fit(*data, epochs=2, verbose=0) if len(data) == 1 else model.fit(*data, batch_size=4, epochs=2,
                                                                                     verbose=0)
        texts = [str(w.message) for w in caught if "one class" in str(w.message)]
        assert len(texts) == 1, texts
        assert "all-zero rows add nothing to the loss" in texts[0] and "binary_crossentropy" in texts[0]


@pytest.mark.loss
def test_one_hot_and_soft_categorical_labels_give_no_warning():
    x = np.random.default_rng(0).random((6, 4, 4, 1)).astype(np.float32)
    soft = np.full((6, 3), 1 / 3, np.float32)
    for y in (np.eye(3, dtype=np.float32)[np.arange(6) % 3], soft):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            categorical_model().fit(x, y, batch_size=3, epochs=1, verbose=0)


@pytest.mark.parametrize("make, hook, message", [
    (lambda tmp: callbacks.CSVLogger(tmp / "x.csv"), "on_epoch_end", r"CSVLogger: on_epoch_end before on_train_begin"),
    (lambda tmp: callbacks.ModelCheckpoint(tmp / "w.npz", monitor="loss"), "on_epoch_end",
     r"ModelCheckpoint: no model yet: callbacks run inside model\.fit"),
    (lambda tmp: callbacks.TrainingCheckpoint(tmp / "c.npz"), "on_epoch_begin", r"TrainingCheckpoint: no model yet"),
    (lambda tmp: callbacks.GradientNormLogger(tmp / "g.csv"), "on_epoch_begin",
     r"GradientNormLogger: on_epoch_begin before on_train_begin"),
    (lambda tmp: callbacks.ProgressBar(2), "on_epoch_begin", r"ProgressBar: on_epoch_begin before on_train_begin"),
])
def test_a_callback_hook_called_outside_fit_names_the_missing_step(tmp_path, make, hook, message):
    callback = make(tmp_path)
    with pytest.raises(RuntimeError, match=message):
        getattr(callback, hook)(0, {"loss": 1.0}) if hook == "on_epoch_end" else getattr(callback, hook)(0)
