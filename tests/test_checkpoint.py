"""Training checkpoints: exact resume, atomic writes, clear failures."""
import os
import signal

import numpy as np
import pytest

import tinyconv
from tinyconv.training import checkpoint
from tinyconv.storage import npzfile
from tinyconv.training.batches import ArrayIterator
from tinyconv.callbacks import Callback, CSVLogger, EarlyStopping, TrainingCheckpoint
from tinyconv.layers import Conv2D, Dense, Flatten, Input, reset_names
from tinyconv.optimizers import SGD, Adam

from training_fixtures import tiny_data, tiny_model

pytestmark = pytest.mark.training


def assert_same_weights(a, b, device="cpu"):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        if device == "cpu":
            np.testing.assert_array_equal(wa, wb)  # bit for bit
        else:
            np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def callbacks_for(folder, restore=False):
    return [EarlyStopping(monitor="val_loss", patience=5), CSVLogger(folder / "log.csv"),
            TrainingCheckpoint(folder / "state.npz", restore=restore)]


@pytest.mark.parametrize("dropout_seed", [None, 7])
def test_resume_after_epoch_k_equals_an_uninterrupted_run(tmp_path, device, dropout_seed):
    x, y = tiny_data()
    fit_args = dict(batch_size=8, verbose=0, validation_data=(x[:12], y[:12]))

    (tmp_path / "a").mkdir()
    straight = tiny_model(dropout_seed=dropout_seed)
    cb_a = callbacks_for(tmp_path / "a")
    straight.fit(x, y, epochs=5, callbacks=cb_a, **fit_args)

    (tmp_path / "b").mkdir()
    first = tiny_model(dropout_seed=dropout_seed)
    first.fit(x, y, epochs=2, callbacks=callbacks_for(tmp_path / "b"), **fit_args)

    # A new process, in effect: another seed, a freshly initialised model, new callbacks.
    resumed = tiny_model(dropout_seed=dropout_seed, seed=99)
    cb_b = callbacks_for(tmp_path / "b", restore=True)
    history = resumed.fit(x, y, epochs=5, callbacks=cb_b, **fit_args)
    assert history.epoch == [2, 3, 4]

    assert_same_weights(straight, resumed, device)
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 25
    assert (cb_b[0].best, cb_b[0].wait) == (cb_a[0].best, cb_a[0].wait)
    log_a = (tmp_path / "a" / "log.csv").read_text().splitlines()
    log_b = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert len(log_b) == 6 and [r.split(",")[0] for r in log_b[1:]] == ["0", "1", "2", "3", "4"]
    if device == "cpu":
        assert log_a == log_b


def test_early_stopping_state_survives_a_resume(tmp_path):
    x, y = tiny_data()
    stopper = EarlyStopping(monitor="loss", patience=3, min_delta=100)  # only epoch 0 improves
    model = tiny_model()
    model.fit(x, y, batch_size=12, epochs=2, verbose=0, callbacks=[stopper, TrainingCheckpoint(tmp_path / "s.npz")])
    assert stopper.wait == 1

    model = tiny_model()
    stopper = EarlyStopping(monitor="loss", patience=3, min_delta=100)
    callbacks = [stopper, TrainingCheckpoint(tmp_path / "s.npz", restore=True)]
    history = model.fit(x, y, batch_size=12, epochs=20, verbose=0, callbacks=callbacks)
    assert history.epoch == [2, 3]  # Keras would forget wait = 1 and run to epoch 4


def test_resume_mid_pass_with_steps_per_epoch(tmp_path):
    """Epochs of 2 batches over 5-batch passes: the resumed run continues the pass it was in."""
    x, y = tiny_data(n=40)
    straight = tiny_model()
    straight.fit(x, y, batch_size=8, epochs=4, steps_per_epoch=2, verbose=0)

    first = tiny_model()
    first.fit(x, y, batch_size=8, epochs=3, steps_per_epoch=2, verbose=0,
              callbacks=[TrainingCheckpoint(tmp_path / "s.npz")])
    resumed = tiny_model(seed=5)
    callbacks = [TrainingCheckpoint(tmp_path / "s.npz", restore=True)]
    resumed.fit(x, y, batch_size=8, epochs=4, steps_per_epoch=2, verbose=0, callbacks=callbacks)
    assert_same_weights(straight, resumed)


def test_ctrl_c_writes_a_checkpoint_that_resumes_exactly(tmp_path, capsys):
    x, y = tiny_data()
    straight = tiny_model()
    straight.fit(x, y, batch_size=8, epochs=3, verbose=0)

    class PressCtrlC(Callback):
        def __init__(self, armed=True):
            super().__init__()
            self.armed = armed

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.armed and self.epoch == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    interrupted = tiny_model()
    saver = TrainingCheckpoint(tmp_path / "s.npz", resume_command="python train.py --resume runs/x")
    history = interrupted.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[PressCtrlC(), saver])
    assert history.interrupted and history.epoch == [0]
    out = capsys.readouterr().out
    assert "Interrupted during epoch 2" in out and "python train.py --resume runs/x" in out

    resumed = tiny_model(seed=3)
    saver = TrainingCheckpoint(tmp_path / "s.npz", restore=True)
    history = resumed.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[PressCtrlC(armed=False), saver])
    assert history.epoch == [1, 2]  # the interrupted epoch is run again from its start
    assert_same_weights(straight, resumed)


def saved_checkpoint(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.fit(x, y, batch_size=12, epochs=1, verbose=0)
    path = tmp_path / "state.npz"
    checkpoint.save_checkpoint(path, model, epoch=1)
    return model, path


def test_a_truncated_checkpoint_is_never_loaded(tmp_path):
    model, path = saved_checkpoint(tmp_path)
    data = path.read_bytes()
    before = [w.copy() for w in model.get_weights()]
    for cut in (10, len(data) // 2, len(data) - 5):
        broken = tmp_path / f"cut{cut}.npz"
        broken.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.npz.*truncated or corrupt"):
            checkpoint.load_checkpoint(broken, model)
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_a_write_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    model, path = saved_checkpoint(tmp_path)
    original = path.read_bytes()

    def savez_then_die(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then the process is killed
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, model, epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["state.npz"]  # no temporary file left behind
    assert checkpoint.load_checkpoint(path, model) == 1


def test_mismatched_checkpoints_fail_clearly_and_change_nothing(tmp_path):
    model, path = saved_checkpoint(tmp_path)

    reset_names()
    tinyconv.set_seed(0)
    inputs = Input((8, 8, 2))
    other = tinyconv.Model(inputs, Dense(3, activation="sigmoid")(Flatten()(Conv2D(5, (3, 3))(inputs))))
    other.compile(Adam(), "binary_crossentropy")
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(ValueError, match=r"layer 1 'conv2d' \(Conv2D\).*\(3, 3, 2, 5\).*\(3, 3, 2, 4\)"):
        checkpoint.load_checkpoint(path, other)
    for w0, w1 in zip(before, other.get_weights()):
        np.testing.assert_array_equal(w0, w1)

    with pytest.raises(ValueError, match="trained with Adam, this model is compiled with SGD"):
        checkpoint.load_checkpoint(path, tiny_model(optimizer=SGD()))
    with pytest.raises(ValueError, match=r"callbacks \[\], got callbacks \['EarlyStopping'\]"):
        checkpoint.load_checkpoint(path, tiny_model(), [EarlyStopping()])
    model.save_weights(tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="not a tinyconv training checkpoint.*load_weights"):
        checkpoint.load_checkpoint(tmp_path / "weights.npz", model)
    with pytest.raises(FileNotFoundError):
        checkpoint.load_checkpoint(tmp_path / "missing.npz", model)


def test_weights_file_mismatch_names_the_first_layer(tmp_path):
    model, _ = saved_checkpoint(tmp_path)
    model.save_weights(tmp_path / "w.npz")
    other = tiny_model(n_labels=2)
    with pytest.raises(ValueError, match=r"w.npz.*layer 6 'dense'.*\(64, 2\).*\(64, 3\)"):
        other.load_weights(tmp_path / "w.npz")


def test_checkpoint_round_trips_every_part(tmp_path):
    model, path = saved_checkpoint(tmp_path)
    state = checkpoint.read(path)
    assert state["epoch"] == 1
    assert state["optimizer"]["iterations"] == model.optimizer.iterations == 3
    np.testing.assert_array_equal(state["optimizer"]["slots"]["m"][0], model.optimizer.get_state()["slots"]["m"][0])
    assert state["random"] == tinyconv.random.get_state()
    assert npzfile.read_npz(path).keys() >= {"__state__", "/weights/001/conv2d/kernel"}


def test_resume_with_an_augmenting_flow_iterator(tmp_path):
    from tinyconv.data import ImageDataGenerator

    x, y = tiny_data()
    generator = ImageDataGenerator(rotation_range=10, width_shift_range=0.1, horizontal_flip=True,
                                   featurewise_center=True)
    generator.fit(x)

    def run(epochs, initial_epoch=0, resume=False, seed=0):
        model = tiny_model(seed=seed)
        flow = generator.flow(x, y, batch_size=8)  # its seeds come from the seeded generators
        callbacks = [TrainingCheckpoint(tmp_path / "s.npz")]
        if resume:
            initial_epoch = checkpoint.load_checkpoint(tmp_path / "s.npz", model, callbacks, data=flow)
        model.fit(flow, epochs=epochs, initial_epoch=initial_epoch, verbose=0, callbacks=callbacks)
        return model

    straight = run(4)
    run(2)
    assert_same_weights(straight, run(4, resume=True, seed=42))


class PressCtrlC(Callback):
    """Sends SIGINT to this process at the end of batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("batch", [0, 3])
@pytest.mark.parametrize("optimizer", [Adam, SGD])
def test_ctrl_c_in_the_first_epoch_resumes_exactly(tmp_path, capsys, batch, optimizer):
    """The checkpoint holds the state before the first step: an optimizer without slots yet."""
    x, y = tiny_data()
    fit_args = dict(batch_size=8, epochs=2, verbose=0, validation_data=(x[:12], y[:12]))
    straight = tiny_model(optimizer(learning_rate=0.01))
    cb_a = callbacks_for(tmp_path)
    straight.fit(x, y, callbacks=cb_a, **fit_args)
    log_a = (tmp_path / "log.csv").read_text()

    (tmp_path / "b").mkdir()
    interrupted = tiny_model(optimizer(learning_rate=0.01))
    history = interrupted.fit(x, y, callbacks=[PressCtrlC(0, batch)] + callbacks_for(tmp_path / "b"), **fit_args)
    assert history.interrupted and history.epoch == []
    assert "Interrupted during epoch 1. Saved the state after epoch 0" in capsys.readouterr().out

    resumed = tiny_model(optimizer(learning_rate=0.01), seed=3)
    cb_b = [PressCtrlC(-1, -1)] + callbacks_for(tmp_path / "b", restore=True)  # the same callbacks; never fires
    state = cb_b[-1].saved_state(epochs=2)
    assert state["epoch"] == 0 and state["optimizer"]["iterations"] == 0
    resumed.fit(x, y, callbacks=cb_b, **fit_args)
    assert_same_weights(straight, resumed)
    assert (tmp_path / "b" / "log.csv").read_text() == log_a


def test_ctrl_c_during_validation_ends_that_epoch_and_resumes_exactly(tmp_path, capsys):
    x, y = tiny_data()
    fit_args = dict(batch_size=8, epochs=3, verbose=0, validation_data=(x[:12], y[:12]))
    straight = tiny_model()
    straight.fit(x, y, callbacks=callbacks_for(tmp_path), **fit_args)
    log_a = (tmp_path / "log.csv").read_text()

    (tmp_path / "b").mkdir()
    interrupted = tiny_model()
    evaluate = interrupted.evaluate

    def evaluate_pressing_ctrl_c(*args, **kwargs):  # Ctrl-C arrives during the second validation
        if interrupted.optimizer.iterations == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    interrupted.evaluate = evaluate_pressing_ctrl_c
    history = interrupted.fit(x, y, callbacks=callbacks_for(tmp_path / "b"), **fit_args)
    assert history.interrupted and history.epoch == [0, 1]  # the validated epoch is complete
    assert "Interrupted after epoch 2. Saved the state after epoch 2" in capsys.readouterr().out

    resumed = tiny_model(seed=3)
    cb_b = callbacks_for(tmp_path / "b", restore=True)
    history = resumed.fit(x, y, callbacks=cb_b, **fit_args)
    assert history.epoch == [2]
    assert_same_weights(straight, resumed)
    assert (tmp_path / "b" / "log.csv").read_text() == log_a


def test_a_checkpoint_saved_right_after_compile_loads(tmp_path):
    for optimizer in (Adam(), SGD(momentum=0.9)):
        model = tiny_model(optimizer)
        checkpoint.save_checkpoint(tmp_path / "s.npz", model, epoch=0)
        other = tiny_model(type(optimizer)(), seed=4)
        assert checkpoint.load_checkpoint(tmp_path / "s.npz", other) == 0
        assert_same_weights(model, other)


def damaged_copies(state):
    """(what, damaged state) pairs, each wrong in one part that is checked after the weights."""
    def changed(edit):
        copy = checkpoint.read(state)
        edit(copy)
        return copy

    def slot_shape(s):
        s["optimizer"]["slots"]["m"][-1] = np.zeros(7)

    def callback_state(s):
        del s["callbacks"][0]["state"]["wait"]

    def data_order(s):
        s["data"]["order"][1] = s["data"]["order"][0]  # not a permutation

    def generator_state(s):
        s["random"]["generators"]["shuffle"] = {"bit_generator": "PCG64", "state": "broken"}

    def weight_values(s):
        s["weights"]["006/dense/bias"][0] = np.nan

    def epoch(s):
        s["epoch"] = -1

    return [(f.__name__, changed(f)) for f in (slot_shape, callback_state, data_order, generator_state,
                                                weight_values, epoch)]


def test_a_load_that_fails_changes_nothing(tmp_path):
    """Model, optimizer, callbacks, generators and data iterator stay as they were."""
    x, y = tiny_data()
    source = tiny_model()
    source.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y),
               callbacks=callbacks_for(tmp_path))

    target = tiny_model(seed=5)
    target.fit(x, y, batch_size=12, epochs=1, verbose=0)  # its own optimizer state, different from the file's
    callbacks = callbacks_for(tmp_path)
    callbacks[0].wait, callbacks[0].best = 3, 0.25
    data = ArrayIterator(x, y, batch_size=8)  # the batches fit drew, as fit resumes them
    next(data)
    before = checkpoint.capture(target, 7, callbacks, data)
    for what, state in damaged_copies(tmp_path / "state.npz"):
        path = tmp_path / f"{what}.npz"
        checkpoint.write(path, state)
        with pytest.raises(ValueError, match=f"{what}.npz"):
            checkpoint.load_checkpoint(path, target, callbacks, data)
        after = checkpoint.capture(target, 7, callbacks, data)
        assert after["random"] == before["random"] and after["callbacks"] == before["callbacks"], what
        assert after["data"]["position"] == before["data"]["position"] and not callbacks[1]._resumed, what
        np.testing.assert_array_equal(after["data"]["order"], before["data"]["order"], err_msg=what)
        for part in ("weights", "optimizer"):
            a, b = {}, {}
            checkpoint._split_arrays(before[part], "", a)
            checkpoint._split_arrays(after[part], "", b)
            assert a.keys() == b.keys(), what
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {part} {key}")
