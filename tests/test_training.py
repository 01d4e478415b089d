"""fit / evaluate / predict on a tiny model, on every available device."""
import io
import os
import signal

import numpy as np
import pytest

import tinyconv
from tinyconv import backend
from tinyconv.training.batches import ArrayIterator
from tinyconv.callbacks import Callback, ProgressBar
from tinyconv.losses import BinaryCrossentropy
from tinyconv.optimizers import SGD

from training_fixtures import tiny_data, tiny_model

pytestmark = pytest.mark.training


def test_fit_learns_and_logs_every_epoch(device):
    x, y = tiny_data()
    model = tiny_model()
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0, validation_data=(x, y))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in history.history.values())
    assert history.epoch == list(range(8))
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.8


def test_epoch_logs_are_batch_size_weighted_means_of_the_steps(device):
    """Replays the same steps by hand: 20 samples in batches of 8, 8, 4, no shuffling."""
    x, y = tiny_data(n=20)
    model = tiny_model()
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    replay = tiny_model()  # same seed: same initial weights, same dropout draws
    losses, accuracies, sizes = [], [], []
    for start in range(0, 20, 8):
        xb, yb = x[start:start + 8], y[start:start + 8]
        drawn = tinyconv.random.get_state()  # the look below and the step draw the same dropout masks
        p = backend.to_numpy(replay.forward(xb, training=True))
        tinyconv.random.set_state(drawn)
        logs = replay.train_step((xb, yb))
        assert logs["accuracy"] == pytest.approx(np.mean(yb == (p > 0.5)), rel=1e-6)
        losses.append(logs["loss"])
        accuracies.append(np.mean(yb == (p > 0.5)))
        sizes.append(len(xb))
    assert sizes == [8, 8, 4]
    assert history.history["loss"][0] == pytest.approx(np.average(losses, weights=sizes), rel=1e-6)
    assert history.history["accuracy"][0] == pytest.approx(np.average(accuracies, weights=sizes), rel=1e-6)


def test_evaluate_and_predict_in_batches_equal_one_big_batch(device):
    x, y = tiny_data(n=23)
    model = tiny_model()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    p_whole = backend.to_numpy(model.forward(x))
    p = model.predict(x, batch_size=5)
    assert type(p) is np.ndarray and p.shape == (23, 3)
    np.testing.assert_allclose(p, p_whole, rtol=1e-5, atol=1e-6)

    loss, accuracy = model.evaluate(x, y, batch_size=7)
    expected = BinaryCrossentropy().forward(p_whole.astype(np.float64), y.astype(np.float64))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert accuracy == pytest.approx(np.mean(y == (p_whole > 0.5)))
    assert model.evaluate(x, y, return_dict=True) == pytest.approx({"loss": loss, "accuracy": accuracy})


def test_fit_accepts_an_iterator_of_batches(device):
    x, y = tiny_data()
    model = tiny_model()
    batches = ArrayIterator(x, y, batch_size=10)
    history = model.fit(batches, epochs=2, verbose=0, validation_data=ArrayIterator(x, y, 12, shuffle=False))
    assert len(history.history["val_loss"]) == 2


def test_steps_per_epoch_limits_the_batches(device):
    x, y = tiny_data()
    model = tiny_model()
    seen = []

    class Count(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    model.fit(x, y, batch_size=4, epochs=2, steps_per_epoch=3, verbose=0, callbacks=[Count()])
    assert seen == [0, 1, 2, 0, 1, 2]
    assert model.optimizer.iterations == 6


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_at_the_end_of_the_batch_and_restores_the_handlers(sent, tmp_path, capsys):
    """SIGTERM (kill, a batch system's time limit) is treated as Ctrl-C: fails if it kills the run
    without the checkpoint that resumes the interrupted epoch."""
    from tinyconv.training import checkpoint
    from tinyconv.callbacks import TrainingCheckpoint
    x, y = tiny_data()
    model = tiny_model()
    steps = []

    class PressCtrlC(Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)
            if len(steps) == 2:
                os.kill(os.getpid(), sent)

    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    saver = TrainingCheckpoint(tmp_path / "c.npz", resume_command="python again.py")
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[PressCtrlC(), saver])
    assert history.interrupted
    assert steps == [0, 1] and model.optimizer.iterations == 2
    assert history.epoch == []  # the interrupted epoch is not logged
    assert {number: signal.getsignal(number) for number in before} == before
    assert checkpoint.read(tmp_path / "c.npz")["epoch"] == 0
    out, err = capsys.readouterr()
    assert ("Ctrl-C" if sent == signal.SIGINT else "SIGTERM") + ": stopping at the end of this batch" in err
    assert "python again.py" in out


def test_verbose_modes(capsys):
    x, y = tiny_data()
    model = tiny_model()
    model.fit(x, y, batch_size=12, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, batch_size=12, epochs=2, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2") and "loss: " in lines[1]
    model.fit(x, y, batch_size=12, epochs=2, verbose=1)  # captured: not a terminal, so plain lines
    out = capsys.readouterr().out
    assert "\r" not in out and len(out.strip().splitlines()) == 2 and "Epoch 2/2" in out

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    model.fit(x, y, batch_size=12, epochs=1, verbose=0, callbacks=[ProgressBar(1, file=terminal)])
    out = terminal.getvalue()
    assert "\r" in out and "Epoch 1/1" in out and "3/3" in out and "accuracy: " in out


@pytest.mark.errors
def test_bad_data_fails_before_training():
    x, y = tiny_data(n=6)
    model = tiny_model()
    with pytest.raises(ValueError, match="4-D batch of images"):
        model.fit(x[0], y)
    bad = x.copy()
    bad[4, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="image 4 contains NaN or inf"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\].*2\.0"):
        model.fit(x, y * 2)
    with pytest.raises(ValueError, match="6 images but 5 label rows"):
        model.fit(x, y[:5])
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 8, 8, 2\), got \(6, 8, 8, 3\)"):
        model.predict(np.zeros((6, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="3 outputs, the labels have shape"):
        model.fit(x, y[:, :2])
    with pytest.raises(ValueError, match="no labels"):
        model.fit(x)
    with pytest.raises(ValueError, match="pass y=None"):
        model.fit(ArrayIterator(x, y), y)
    with pytest.raises(TypeError, match="one NumPy array.*got a list of 2 items.*np.stack"):
        model.fit([x, y])
    with pytest.raises(ValueError, match=r"validation_data.*4-D"):
        model.fit(x, y, validation_data=(x[0], y))
    assert model.optimizer.iterations == 0


@pytest.mark.errors
def test_fit_needs_compile():
    from tinyconv import Model
    from tinyconv.layers import Dense, Flatten, Input
    inputs = Input((2, 2, 1))
    model = Model(inputs, Dense(1, activation="sigmoid")(Flatten()(inputs)))
    with pytest.raises(RuntimeError, match="call compile"):
        model.fit(np.zeros((2, 2, 2, 1), np.float32), np.zeros((2, 1), np.float32))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_diverging_step_reports_nan_and_leaves_the_weights():
    x, y = tiny_data(n=8)
    model = tiny_model(optimizer=SGD(learning_rate=0.1))
    model.layers[1].params["kernel"][...] = np.inf
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_step((x, y))["loss"]
    assert np.isnan(loss)
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    with pytest.raises(ValueError, match=r"evaluate: the weights hold NaN or inf \(first in layer 1 'conv2d', "
                                         r"'kernel'\): the training diverged"):
        model.evaluate(x, y)
    with pytest.raises(ValueError, match="predict: the weights hold NaN or inf"):
        model.predict(x)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fit_stops_at_the_first_non_finite_loss_keeping_the_weights_before_it(capsys):
    x, y = tiny_data()
    model = tiny_model(optimizer=SGD(learning_rate=0.05))
    model.fit(x, y, batch_size=6, epochs=1, verbose=0)

    class RecordWeights(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.last = (batch, [w.copy() for w in self.model.get_weights()])

    recorder = RecordWeights()
    model.optimizer.learning_rate = 1e12  # diverges within a few steps
    history = model.fit(x, y, batch_size=6, epochs=6, initial_epoch=1, verbose=0, callbacks=[recorder])
    last_good_batch, weights = recorder.last
    err = capsys.readouterr().err
    assert f"at epoch 2, batch {last_good_batch + 2} of 6" in err
    assert "learning rate" in err and "standardise" in err and "stop_on_nan=False" in err
    assert history.diverged and history.epoch == [] and not history.interrupted
    assert model.optimizer.iterations == 6 + last_good_batch + 1  # the bad step was not applied
    for w0, w1 in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    # The weights are finite, but so large that the outputs overflow: said, and no accuracy from NaN.
    with pytest.warns(RuntimeWarning, match="evaluate: the outputs are NaN or inf from batch 1 on.*too large"):
        assert np.isnan(model.evaluate(x, y)).all()

    # Turned off, fit runs every epoch (skipping the non-finite steps) and reports NaN means.
    history = model.fit(x, y, batch_size=6, epochs=3, initial_epoch=1, verbose=0, stop_on_nan=False)
    assert not history.diverged and history.epoch == [1, 2]
    assert capsys.readouterr().err == ""


def test_gpu_predict_returns_host_arrays(device):
    x, y = tiny_data(n=5)
    model = tiny_model()
    assert backend.is_gpu_array(model.layers[1].params["kernel"]) == (device == "gpu")
    assert isinstance(model.predict(x), np.ndarray)
    tinyconv.set_device("cpu")


def test_saliency_is_the_gradient_of_the_label_score(float64):
    """Against central differences of the score z_label (the output before the sigmoid)."""
    from tinyconv.diagnostics.saliency import saliency_map

    x = tiny_data(n=1)[0].astype(np.float64)
    model = tiny_model()
    label, h = 1, 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        shifted = [x.copy(), x.copy()]
        shifted[0][index] += h
        shifted[1][index] -= h
        z_plus, z_minus = (backend.to_numpy(model.forward_logits(s))[index[0], label] for s in shifted)
        numeric[index] = (z_plus - z_minus) / (2 * h)
    np.testing.assert_allclose(saliency_map(model, x, label), np.abs(numeric).max(axis=-1), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match=r"label must be in \[0, 3\)"):
        saliency_map(model, x, 3)


def test_one_read_back_per_training_step_and_labels_checked_and_copied_once(device, monkeypatch):
    """Loss, accuracy and the finite flag come to the host in one transfer per step; the labels
    are checked on the host (once for arrays, once per batch for an iterator) and copied to the
    device once per step. Counted through the backend's to_numpy, which every read-back uses."""
    from tinyconv.training import batches
    from tinyconv.data import ImageDataGenerator

    x, y = tiny_data()  # 36 samples: 5 batches of 8 per epoch
    model = tiny_model()
    transfers, label_checks, copies = [], [], []
    to_numpy, check_label_range, to_model_device = backend.to_numpy, batches.check_label_range, model.to_model_device
    monkeypatch.setattr(backend, "to_numpy", lambda a: transfers.append(np.shape(a)) or to_numpy(a))
    monkeypatch.setattr(batches, "check_label_range", lambda *a: label_checks.append(1) or check_label_range(*a))
    monkeypatch.setattr(model, "to_model_device", lambda a: copies.append(np.ndim(a)) or to_model_device(a))

    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert len(transfers) == 10 and len(label_checks) == 1
    assert copies.count(2) == 10 and copies.count(4) == 10  # labels and images, once per step each

    transfers.clear(), label_checks.clear()
    model.fit(ImageDataGenerator().flow(x, y, batch_size=8), epochs=1, verbose=0)
    assert len(transfers) == 5 and len(label_checks) == 5

    transfers.clear()
    model.evaluate(x, y, batch_size=8)
    assert len(transfers) == 1 + 5  # the weights' finite flags, then one per batch


def batchnorm_dropout_model():
    from tinyconv import Model
    from tinyconv.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU
    tinyconv.set_seed(3)
    inputs = Input((8, 8, 2))
    x = LeakyReLU()(BatchNormalization()(Conv2D(4, (3, 3))(inputs)))
    outputs = Dense(3, activation="sigmoid")(Dropout(0.5)(Flatten()(x)))
    model = Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    return model


def model_state(model):
    """Everything a step may change: weights (moving statistics included), the optimizer's moments
    and counter, and where every random generator stands."""
    import copy
    return ([w.copy() for w in model.get_weights()], copy.deepcopy(model.optimizer.get_state()),
            copy.deepcopy(tinyconv.random.get_state()))


def assert_same_state(a, b):
    for w0, w1 in zip(a[0], b[0]):
        np.testing.assert_array_equal(w0, w1)
    assert repr(a[1]) == repr(b[1]) and a[2] == b[2]


@pytest.mark.norm
@pytest.mark.dropout
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_refused_step_leaves_moving_statistics_optimizer_and_generators_as_before():
    """Fails if the step refused for a non-finite loss keeps BatchNorm's moving statistics (which
    move in the forward pass) or the dropout generator's draws."""
    x, y = tiny_data(n=12)
    model = batchnorm_dropout_model()
    model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0)  # some history in every state
    huge = x.copy()
    huge[8:] = 3e38  # batch 3: the convolution overflows, and BatchNorm's batch statistics with it

    class Record(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.after_good_batch = model_state(self.model)

    recorder = Record()
    history = model.fit(huge, y, batch_size=4, epochs=2, initial_epoch=1, shuffle=False, verbose=0,
                        callbacks=[recorder])
    assert history.diverged
    assert_same_state(recorder.after_good_batch, model_state(model))
    # The same for a step alone.
    before = model_state(model)
    loss = model.train_step((huge[8:], y[8:]))["loss"]
    assert not np.isfinite(loss)
    assert_same_state(before, model_state(model))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_stopping_at_a_refused_batch_puts_the_shuffled_data_back_before_it(tmp_path):
    """A checkpoint saved after fit stopped at a refused batch retries that batch: the data's
    position and the shuffling draw of its epoch are as before it (fails if either moves on)."""
    from tinyconv.training.batches import ArrayIterator
    x, y = tiny_data(n=12)
    model = batchnorm_dropout_model()
    data = ArrayIterator(x, y, batch_size=4, shuffle=True)
    next(data)  # the epoch's permutation is drawn, one batch served
    before = (data.get_state(), tinyconv.random.get_state())
    model.layers[1].params["kernel"][...] = np.inf
    history = model.fit(data, epochs=1, verbose=0)
    assert history.diverged
    after = data.get_state()
    np.testing.assert_array_equal(after["order"], before[0]["order"])
    assert after["position"] == before[0]["position"] and tinyconv.random.get_state() == before[1]


class GradientWatch(tinyconv.Model):
    """A subclass that overrides train_step: the usual step, plus the gradient norm in the logs."""

    @property
    def metrics_names(self):
        return [*super().metrics_names, "gradient_norm"]

    def train_step(self, data):
        logs = super().train_step(data)
        logs["gradient_norm"] = float(np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in self.gradients())))
        return logs


class AddsToTheEpochLogs(Callback):
    """What one callback adds to an epoch's logs, the later ones (History, CSVLogger) must see."""

    def on_epoch_end(self, epoch, logs=None):
        logs["twice_the_loss"] = 2 * logs["loss"]


def watched_model(seed):
    from tinyconv.layers import Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, MaxPooling2D, reset_names
    tinyconv.set_seed(seed)
    reset_names()
    inputs = Input((8, 8, 2))
    x = Dropout(0.25)(Flatten()(MaxPooling2D((2, 2))(LeakyReLU()(Conv2D(4, (3, 3), padding="same")(inputs)))))
    model = GradientWatch(inputs, Dense(3, activation="sigmoid")(x))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def test_a_subclass_that_overrides_train_step_gets_every_callback_and_resumes_bit_for_bit(tmp_path):
    from tinyconv.callbacks import (CSVLogger, EarlyStopping, ModelCheckpoint, TerminateOnNaN,
                                    TrainingCheckpoint)
    x, y = tiny_data()

    def callbacks(folder, restore=False):
        return [AddsToTheEpochLogs(), EarlyStopping(monitor="gradient_norm", patience=10),
                CSVLogger(folder / "log.csv"), TerminateOnNaN(),
                ModelCheckpoint(folder / "best.npz", monitor="gradient_norm", mode="min", save_best_only=True),
                TrainingCheckpoint(folder / "state.npz", restore=restore)]

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    straight = watched_model(0)
    history = straight.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=callbacks(tmp_path / "a"))
    assert set(history.history) == {"loss", "accuracy", "gradient_norm", "twice_the_loss"}
    assert history.history["twice_the_loss"] == [2 * v for v in history.history["loss"]]
    assert all(v > 0 for v in history.history["gradient_norm"]) and (tmp_path / "a" / "best.npz").is_file()

    watched_model(0).fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks(tmp_path / "b"))
    resumed = watched_model(7)
    history = resumed.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=callbacks(tmp_path / "b", restore=True))
    assert history.epoch == [2, 3]
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "a" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()
    assert "gradient_norm" in (tmp_path / "b" / "log.csv").read_text().splitlines()[0]
