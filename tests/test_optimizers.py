"""Adam and SGD against the update formulas computed by hand."""
import numpy as np
import pytest

from tinyconv.optimizers import SGD, Adam

pytestmark = pytest.mark.optim


def test_adam_first_three_steps_match_keras_formula():
    w = np.array([1.0, -2.0, 0.5])
    grads = [np.array([0.1, -0.3, 2.0]), np.array([-0.2, 0.1, 1.0]), np.array([0.05, 0.0, -4.0])]
    opt = Adam(lr=0.01)  # the seed's alias
    assert opt.learning_rate == 0.01 and opt.epsilon == 1e-7
    expected = w.copy()
    m = np.zeros(3)
    v = np.zeros(3)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        a = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        expected = expected - a * m / (np.sqrt(v) + 1e-7)
        opt.step([w], [g])
        np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert opt.iterations == 3


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(4) for _ in range(4)]
    w1, w2 = np.zeros(4), np.zeros(4)
    a = Adam()
    for g in grads[:2]:
        a.step([w1], [g])
    w2[:] = w1
    b = Adam()
    b.set_state(a.get_state(), [w2])
    for g in grads[2:]:
        a.step([w1], [g])
        b.step([w2], [g])
    np.testing.assert_array_equal(w1, w2)


def test_sgd_momentum_and_nesterov():
    g = np.array([1.0, -2.0])
    w = np.zeros(2)
    opt = SGD(learning_rate=0.1, momentum=0.9)
    opt.step([w], [g])
    opt.step([w], [g])
    # v1 = -0.1 g; w1 = v1; v2 = 0.9 v1 - 0.1 g = -0.19 g; w2 = w1 + v2 = -0.29 g
    np.testing.assert_allclose(w, -0.29 * g)
    w = np.zeros(2)
    opt = SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    opt.step([w], [g])
    np.testing.assert_allclose(w, 0.9 * (-0.1 * g) - 0.1 * g)


def test_float32_parameters_stay_float32():
    w = np.ones(3, dtype=np.float32)
    Adam().step([w], [np.ones(3, dtype=np.float32)])
    assert w.dtype == np.float32
