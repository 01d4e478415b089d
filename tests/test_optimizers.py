"""Adam and SGD against the update formulas computed by hand."""
import numpy as np
import pytest

from tinyconv.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, Nadam, RMSprop

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


# --- Keras 3's other optimizers, each against its update rule written out here, step by step ---------

def keras_rmsprop(w, grads, lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    v, a, u = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        v = rho * v + (1 - rho) * g ** 2
        if centered:
            a = rho * a + (1 - rho) * g
            increment = lr * g / np.sqrt(v - a ** 2 + epsilon)
        else:
            increment = lr * g / np.sqrt(v + epsilon)
        if momentum > 0:
            u = momentum * u + increment
            w = w - u
        else:
            w = w - increment
        yield w


def keras_adagrad(w, grads, lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    s = np.full_like(w, initial_accumulator_value)
    for g in grads:
        s = s + g ** 2
        w = w - lr * g / np.sqrt(s + epsilon)
        yield w


def keras_adadelta(w, grads, lr=0.001, rho=0.95, epsilon=1e-7):
    s, d = np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        s = rho * s + (1 - rho) * g ** 2
        delta = -np.sqrt(d + epsilon) / np.sqrt(s + epsilon) * g
        d = rho * d + (1 - rho) * delta ** 2
        w = w + lr * delta
        yield w


def keras_nadam(w, grads, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m, v, u_product = np.zeros_like(w), np.zeros_like(w), 1.0
    for t, g in enumerate(grads, start=1):
        u_t = beta_1 * (1 - 0.5 * 0.96 ** (t * 0.004))
        u_t_1 = beta_1 * (1 - 0.5 * 0.96 ** ((t + 1) * 0.004))
        u_product_t = u_product * u_t
        u_product_t_1 = u_product_t * u_t_1
        u_product = u_product_t
        m = m + (g - m) * (1 - beta_1)
        v = v + (g ** 2 - v) * (1 - beta_2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product_t)
        v_hat = v / (1 - beta_2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + epsilon)
        yield w


def keras_adamw(w, grads, lr=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w - w * weight_decay * lr
        alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g ** 2 - v) * (1 - beta_2)
        w = w - alpha * m / (np.sqrt(v) + epsilon)
        yield w


OTHERS = [
    (RMSprop, keras_rmsprop, {}),
    (RMSprop, keras_rmsprop, {"momentum": 0.5}),
    (RMSprop, keras_rmsprop, {"centered": True, "rho": 0.8, "learning_rate": 0.01}),
    (Adagrad, keras_adagrad, {}),
    (Adagrad, keras_adagrad, {"initial_accumulator_value": 0.5, "learning_rate": 0.1}),
    (Adadelta, keras_adadelta, {}),
    (Adadelta, keras_adadelta, {"rho": 0.5, "learning_rate": 1.0}),
    (Nadam, keras_nadam, {}),
    (Nadam, keras_nadam, {"beta_1": 0.5, "learning_rate": 0.01}),
    (AdamW, keras_adamw, {}),
    (AdamW, keras_adamw, {"weight_decay": 0.1, "learning_rate": 0.01}),
]


def _keras_names(kwargs):
    """The references name the learning rate lr."""
    return {("lr" if k == "learning_rate" else k): v for k, v in kwargs.items()}


@pytest.mark.parametrize("optimizer, reference, kwargs", OTHERS,
                         ids=[f"{o.__name__}-{'-'.join(map(str, k.values())) or 'defaults'}" for o, _, k in OTHERS])
def test_other_optimizers_follow_keras_update_rules(optimizer, reference, kwargs):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(6)]
    opt = optimizer(**kwargs)
    mine = w.copy()
    for expected, g in zip(reference(w.copy(), grads, **_keras_names(kwargs)), grads):
        opt.step([mine], [g])
        np.testing.assert_allclose(mine, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("optimizer", [Adam, SGD, RMSprop, Adagrad, Adadelta, Nadam, AdamW])
def test_every_optimizer_resumes_from_its_state_bit_for_bit(optimizer):
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(4) for _ in range(5)]
    kwargs = {"momentum": 0.5} if optimizer in (SGD, RMSprop) else {}
    uninterrupted, resumed = np.ones(4), np.ones(4)
    a = optimizer(**kwargs)
    for g in grads[:2]:
        a.step([uninterrupted], [g])
    resumed[:] = uninterrupted
    b = optimizer(**kwargs)
    b.set_state(a.get_state(), [resumed])
    for g in grads[2:]:
        a.step([uninterrupted], [g])
        b.step([resumed], [g])
    np.testing.assert_array_equal(uninterrupted, resumed)


def test_keras_2_decay_divides_the_rate_by_one_plus_decay_times_the_step():
    g = np.array([1.0, -2.0])
    w = np.zeros(2)
    opt = SGD(learning_rate=0.1, decay=0.5)
    expected = np.zeros(2)
    for iterations in range(4):  # Keras 2: lr / (1 + decay * iterations), iterations counted from 0
        opt.step([w], [g])
        expected = expected - 0.1 / (1 + 0.5 * iterations) * g
        np.testing.assert_allclose(w, expected, rtol=1e-14)


def test_optimizer_names_and_defaults_are_keras_3s():
    import tinyconv
    assert isinstance(tinyconv.optimizers.get("rmsprop"), RMSprop)
    r = RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    assert (Adagrad().learning_rate, Adagrad().initial_accumulator_value) == (0.001, 0.1)
    assert (Adadelta().learning_rate, Adadelta().rho) == (0.001, 0.95)
    assert AdamW().weight_decay == 0.004
    for name in ("adagrad", "adadelta", "nadam", "adamw", "adam", "sgd"):
        assert type(tinyconv.optimizers.get(name)).__name__.lower() == name
    with pytest.raises(ValueError, match="rho must"):
        RMSprop(rho=1.0)
    with pytest.raises(ValueError, match="decay must"):
        Adam(decay=-1)
