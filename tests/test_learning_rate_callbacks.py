"""LearningRateScheduler and ReduceLROnPlateau against Keras's rules traced by hand, and their resume."""
import numpy as np
import pytest

from tinyconv.callbacks import CSVLogger, LearningRateScheduler, ReduceLROnPlateau, TrainingCheckpoint, read_csv_log
from tinyconv.optimizers import SGD

from training_fixtures import tiny_data, tiny_model

pytestmark = pytest.mark.training


def test_scheduler_sets_each_epochs_rate_and_logs_it(tmp_path):
    x, y = tiny_data()
    model = tiny_model(SGD(0.1))
    rates = []

    def schedule(epoch, lr):
        rates.append(lr)
        return lr if epoch < 2 else lr * 0.5

    history = model.fit(x, y, epochs=5, batch_size=12, verbose=0,
                        callbacks=[LearningRateScheduler(schedule), CSVLogger(tmp_path / "log.csv")])
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.025]  # each call sees the rate the previous one set
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05, 0.025, 0.0125]
    assert read_csv_log(tmp_path / "log.csv")["learning_rate"] == [0.1, 0.1, 0.05, 0.025, 0.0125]
    one_argument = tiny_model(SGD(0.1))
    history = one_argument.fit(x, y, epochs=2, batch_size=12, verbose=0,
                               callbacks=[LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert history.history["learning_rate"] == [0.01, 0.02]


def test_a_rate_from_the_scheduler_is_what_sgd_steps_with():
    x, y = tiny_data(n=12)
    scheduled = tiny_model(SGD(0.1))  # each built and trained from seed 0 in turn: the same dropout draws
    scheduled.fit(x, y, epochs=1, batch_size=12, verbose=0, shuffle=False,
                  callbacks=[LearningRateScheduler(lambda epoch, lr: 0.03)])
    plain = tiny_model(SGD(0.03))
    plain.fit(x, y, epochs=1, batch_size=12, verbose=0, shuffle=False)
    for a, b in zip(scheduled.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.errors
def test_bad_schedules_fail_clearly():
    x, y = tiny_data(n=12)
    model = tiny_model(SGD(0.1))
    with pytest.raises(TypeError, match="schedule must be a function"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="the schedule returned -1 for epoch 0"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: -1)])
    with pytest.raises(ValueError, match="factor must"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="monitor 'val_loss' will not be in this run's logs"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ReduceLROnPlateau()])


class _Model:
    def __init__(self, rate):
        self.optimizer = SGD(rate)


def keras_plateau(values, lr, factor, patience, min_delta, cooldown, min_lr):
    """Keras's ReduceLROnPlateau in mode 'min', written out: the rate after each epoch."""
    best, wait, cooldown_counter, rates = np.inf, 0, 0, []
    for value in values:
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        if value < best - min_delta:
            best, wait = value, 0
        elif cooldown_counter <= 0:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr = max(lr * factor, min_lr)
                cooldown_counter, wait = cooldown, 0
        rates.append(lr)
    return rates


@pytest.mark.parametrize("patience, cooldown, min_lr", [(2, 0, 0.0), (1, 2, 0.0), (2, 1, 0.004), (0, 0, 0.0)])
def test_plateau_follows_keras_rule(patience, cooldown, min_lr):
    values = [1.0, 0.9, 0.95, 0.92, 0.91, 0.89999, 0.7, 0.8, 0.8, 0.8, 0.8, 0.69, 0.7, 0.7, 0.7]
    callback = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=patience, cooldown=cooldown,
                                 min_lr=min_lr, min_delta=1e-4)
    callback.set_model(_Model(0.1))
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        before = callback.model.optimizer.learning_rate
        logs = {"val_loss": value}
        callback.on_epoch_end(epoch, logs)
        assert logs["learning_rate"] == before  # the rate this epoch trained with
        rates.append(callback.model.optimizer.learning_rate)
    assert rates == keras_plateau(values, 0.1, 0.5, patience, 1e-4, cooldown, min_lr)
    assert min(rates) >= min_lr and rates[-1] < 0.1


def test_plateau_and_rate_resume_bit_for_bit(tmp_path):
    x, y = tiny_data()

    def callbacks(folder, restore=False):
        return [ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0),  # never improves
                TrainingCheckpoint(folder / "state.npz", restore=restore)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = tiny_model(SGD(0.1))
    history_a = straight.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=callbacks(tmp_path / "a"))
    first = tiny_model(SGD(0.1))
    first.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks(tmp_path / "b"))
    resumed = tiny_model(SGD(0.1), seed=99)
    history_b = resumed.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=callbacks(tmp_path / "b", True))
    assert history_b.history["learning_rate"] == history_a.history["learning_rate"][2:]
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate < 0.1
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
