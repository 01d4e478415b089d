"""Callbacks against hand-worked sequences, and inside fit."""
import csv

import numpy as np
import pytest

from tinyconv.training import checkpoint
from tinyconv.diagnostics import plots
from tinyconv.callbacks import (Callback, CSVLogger, EarlyStopping, GradientNormLogger, ModelCheckpoint,
                                TerminateOnNaN, TrainingCheckpoint)
from tinyconv.optimizers import SGD

from training_fixtures import tiny_data, tiny_model

pytestmark = pytest.mark.training


class FakeModel:
    """Just what the callbacks touch: a stop flag and weights that record the epoch they come from."""

    def __init__(self):
        self.stop_training = False
        self.epoch = -1
        self.restored = None

    def get_weights(self):
        return [np.array([self.epoch], dtype=np.float32)]

    def set_weights(self, weights):
        self.restored = int(weights[0][0])


def run_epochs(callback, values, monitor="val_loss"):
    """Feed ``values`` to the callback epoch by epoch, as fit does; returns the epochs run."""
    model = FakeModel()
    callback.set_model(model)
    callback.set_params({"initial_epoch": 0})
    callback.on_train_begin()
    ran = []
    for epoch, value in enumerate(values):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {monitor: value})
        ran.append(epoch)
        if model.stop_training:
            break
    callback.on_train_end()
    return ran, model


def test_early_stopping_hand_worked():
    # best 0.9 at epoch 1; epochs 2, 3, 4 do not beat it: wait = 1, 2, 3 = patience -> stop after epoch 4.
    stopper = EarlyStopping(monitor="val_loss", patience=3)
    ran, _ = run_epochs(stopper, [1.0, 0.9, 0.95, 0.92, 0.91, 0.5, 0.4])
    assert ran == [0, 1, 2, 3, 4]
    assert stopper.stopped_epoch == 4 and stopper.best == 0.9 and stopper.best_epoch == 1


def test_early_stopping_min_delta_and_reset_of_wait():
    # min_delta 0.05: 0.96 and 0.93 are not improvements on 1.0 (by more than 0.05), 0.9 is (wait resets).
    stopper = EarlyStopping(patience=2, min_delta=0.05)
    ran, _ = run_epochs(stopper, [1.0, 0.96, 0.9, 0.87, 0.86, 0.1])
    assert ran == [0, 1, 2, 3, 4]
    assert stopper.best == 0.9


def test_early_stopping_patience_zero_stops_at_the_first_non_improvement():
    ran, _ = run_epochs(EarlyStopping(patience=0), [3.0, 2.0, 2.0, 1.0])
    assert ran == [0, 1, 2]


def test_early_stopping_auto_mode_maximises_accuracy_and_restores_best_weights():
    stopper = EarlyStopping(monitor="val_accuracy", patience=2, restore_best_weights=True)
    ran, model = run_epochs(stopper, [0.5, 0.7, 0.6, 0.65, 0.9], monitor="val_accuracy")
    assert ran == [0, 1, 2, 3]
    assert model.restored == 1  # the weights of the best epoch (0.7)


def test_early_stopping_inside_fit():
    x, y = tiny_data()
    model = tiny_model()
    # No later epoch can beat the first by 100: patience 2 ends the run after epoch index 2.
    history = model.fit(x, y, batch_size=12, epochs=10, verbose=0,
                        callbacks=[EarlyStopping(monitor="loss", patience=2, min_delta=100)])
    assert history.epoch == [0, 1, 2]


def read_csv(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_header_and_rows(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    path = tmp_path / "log.csv"
    history = model.fit(x, y, batch_size=12, epochs=3, verbose=0, validation_data=(x, y),
                        callbacks=[CSVLogger(path, separator=";")])
    rows = read_csv(path, ";")
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    np.testing.assert_array_equal([float(r[2]) for r in rows[1:]], history.history["loss"])
    np.testing.assert_array_equal([float(r[4]) for r in rows[1:]], history.history["val_loss"])

    model.fit(x, y, batch_size=12, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";", append=True)])
    rows = read_csv(path, ";")
    assert len(rows) == 5 and rows.count(rows[0]) == 1  # one header, four rows
    model.fit(x, y, batch_size=12, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    assert len(read_csv(path, ";")) == 2  # append=False starts over


def test_csv_logger_on_resume_drops_rows_of_epochs_it_will_redo(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,0.9\n1,0.8\n2,0.7\n")  # epoch 2 was logged, its checkpoint never written
    logger = CSVLogger(path)
    logger.set_state({})  # restored from a checkpoint: append
    logger.set_params({"initial_epoch": 2})
    logger.on_train_begin()
    logger.on_epoch_end(2, {"loss": 0.65})
    logger.on_train_end()
    assert read_csv(path) == [["epoch", "loss"], ["0", "0.9"], ["1", "0.8"], ["2", "0.65"]]


def test_model_checkpoint_save_best_only_and_file_names(tmp_path):
    saved = []

    class Recorder(ModelCheckpoint):
        def on_epoch_end(self, epoch, logs=None):
            self.model.save_weights = lambda path: saved.append(path)
            super().on_epoch_end(epoch, logs)

    model = tiny_model()
    callback = Recorder(str(tmp_path / "w-{epoch:02d}-{val_loss:.2f}.npz"), save_best_only=True)
    callback.set_model(model)
    for epoch, value in enumerate([0.8, 0.9, 0.7, 0.7, float("nan"), 0.6]):
        callback.on_epoch_end(epoch, {"val_loss": value})
    assert [p.split("/")[-1] for p in saved] == ["w-01-0.80.npz", "w-03-0.70.npz", "w-06-0.60.npz"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_terminate_on_nan_keeps_the_last_good_checkpoints(tmp_path, capsys):
    x, y = tiny_data()
    model = tiny_model(optimizer=SGD(learning_rate=0.05))
    weights_path, state_path = tmp_path / "best.npz", tmp_path / "state.npz"
    callbacks = [TerminateOnNaN(), ModelCheckpoint(weights_path, monitor="loss"), TrainingCheckpoint(state_path)]
    model.fit(x, y, batch_size=6, epochs=1, verbose=0, callbacks=callbacks)
    good = [w.copy() for w in model.get_weights()]
    files = {p: p.read_bytes() for p in (weights_path, state_path)}

    model.optimizer.learning_rate = 1e12  # diverges within a few steps
    history = model.fit(x, y, batch_size=6, epochs=6, initial_epoch=1, verbose=0, callbacks=callbacks,
                        stop_on_nan=False)  # fit's own stop off: TerminateOnNaN's turn, as in Keras
    err = capsys.readouterr().err
    assert "TerminateOnNaN: epoch 2" in err and "diverged" in err and "smaller learning rate" in err
    assert len(history.epoch) == 1 and np.isnan(history.history["loss"][0])
    assert model.optimizer.iterations < 12  # stopped inside the epoch
    for path, content in files.items():
        assert path.read_bytes() == content, f"{path.name} was overwritten"
    model.load_weights(weights_path)
    for w0, w1 in zip(good, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    assert checkpoint.read(state_path)["epoch"] == 1


class Recorder(Callback):
    """Records, independently of GradientNormLogger, each batch's gradients and weights per layer."""

    def on_train_batch_end(self, batch, logs=None):
        layers = [layer for layer in self.model.layers if layer.params]
        self.batches.append([(np.concatenate([g.ravel() for g in layer.grads.values()]),
                              np.concatenate([w.ravel() for w in layer.params.values()])) for layer in layers])

    def on_train_begin(self, logs=None):
        self.batches = []


def test_gradient_norm_logger_against_recorded_batches(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.compile(SGD(learning_rate=0.05), "binary_crossentropy")
    recorder = Recorder()
    logger = GradientNormLogger(tmp_path / "gradients.csv")
    model.fit(x[:24], y[:24], epochs=2, batch_size=8, verbose=0, callbacks=[recorder, logger])
    with open(tmp_path / "gradients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    n_layers = len(recorder.batches[0])
    assert len(rows) == 2 * n_layers and list(rows[0]) == ["epoch", "layer", "depth", "gradient_norm",
                                                           "update_ratio", "weight_norm"]
    for row in rows:
        epoch, depth = int(row["epoch"]), int(row["depth"])
        batches = recorder.batches[3 * epoch:3 * epoch + 3]  # 24 images, batches of 8
        grad = np.mean([np.linalg.norm(b[depth][0]) for b in batches])
        assert float(row["gradient_norm"]) == pytest.approx(grad, rel=1e-6)
        steps = range(max(3 * epoch, 1), 3 * epoch + 3)  # the very first step has no previous weights
        ratios = [np.linalg.norm(recorder.batches[t][depth][1] - recorder.batches[t - 1][depth][1])
                  / np.linalg.norm(recorder.batches[t - 1][depth][1]) for t in steps]
        assert float(row["update_ratio"]) == pytest.approx(np.mean(ratios), rel=1e-5)
        # Plain SGD: each step moves the weights by exactly lr * gradient.
        sgd = [0.05 * np.linalg.norm(recorder.batches[t][depth][0]) / np.linalg.norm(recorder.batches[t - 1][depth][1])
               for t in steps]
        assert float(row["update_ratio"]) == pytest.approx(np.mean(sgd), rel=1e-4)
    assert logger.rows[0]["layer"] == rows[0]["layer"]
    png = plots.plot_gradient_norms(tmp_path / "gradients.csv", tmp_path / "gradients.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_gradient_norm_logger_appends_on_resume(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.compile("adam", "binary_crossentropy")
    callbacks = [GradientNormLogger(tmp_path / "g.csv"), TrainingCheckpoint(tmp_path / "state.npz")]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
    resumed = tiny_model()
    resumed.compile("adam", "binary_crossentropy")
    callbacks = [GradientNormLogger(tmp_path / "g.csv"), TrainingCheckpoint(tmp_path / "state.npz", restore=True)]
    resumed.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=callbacks)
    with open(tmp_path / "g.csv", newline="") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    layers = len(callbacks[0].layers)
    assert epochs == [0] * layers + [1] * layers + [2] * layers


def test_a_hand_edited_csv_log_does_not_break_a_resume(tmp_path):
    """A comment line, blank lines and a row of an epoch to be redone (a crash wrote it)."""
    x, y = tiny_data()
    log, state = tmp_path / "history.csv", tmp_path / "state.npz"
    model = tiny_model()
    model.fit(x, y, batch_size=12, epochs=2, verbose=0, callbacks=[CSVLogger(log), TrainingCheckpoint(state)])
    header, row0, row1 = log.read_text().splitlines()
    log.write_text("\n".join(["# lr 0.01, second try", header, row0, "", "# looked fine", row1,
                              "2," + row1.split(",", 1)[1], ""]) + "\n")

    model = tiny_model(seed=8)
    callbacks = [CSVLogger(log), TrainingCheckpoint(state, restore=True)]
    model.fit(x, y, batch_size=12, epochs=3, verbose=0, callbacks=callbacks)
    lines = log.read_text().splitlines()
    assert lines[:6] == ["# lr 0.01, second try", header, row0, "", "# looked fine", row1]
    assert lines[6] == "" and len(lines) == 8  # the hand-made lines stay; the stale epoch-2 row is gone
    assert lines[7].startswith("2,") and lines[7] != "2," + row1.split(",", 1)[1]


def test_read_csv_log_skips_lines_added_by_hand(tmp_path):
    from tinyconv.callbacks import read_csv_log
    path = tmp_path / "history.csv"
    path.write_text("# second try\nepoch,loss,val_loss\n0,0.7,0.8\n\n# note\n1,0.6,0.7\n")
    assert read_csv_log(path) == {"loss": [0.7, 0.6], "val_loss": [0.8, 0.7]}
