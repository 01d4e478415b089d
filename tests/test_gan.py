"""The GAN's two steps by explicit backprop, its checkpoints, and the Fréchet distance that scores it."""
import numpy as np
import pytest
import scipy.linalg

import tinyconv
from tinyconv import Model
from tinyconv.diagnostics.frechet import frechet_distance
from tinyconv.training.gan import GAN
from tinyconv.layers import Conv2D, Conv2DTranspose, Dense, Flatten, Input, LeakyReLU, Reshape

pytestmark = pytest.mark.generative


def reference_frechet(a, b):
    """The textbook formula with scipy's general matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def test_frechet_distance_matches_the_matrix_square_root_formula(rng):
    a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(reference_frechet(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_sees_a_collapsed_generator(rng):
    """Same mean, no variety: the covariance term alone must make the distance large."""
    real = rng.standard_normal((500, 4))
    collapsed = 0.01 * rng.standard_normal((500, 4))
    assert frechet_distance(real, collapsed) > 3.0
    assert frechet_distance(real, rng.standard_normal((500, 4))) < 0.2


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(5, 4\)"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def tiny_gan(latent=4):
    z = Input((latent,))
    x = Dense(2 * 2 * 3)(z)
    x = LeakyReLU(0.2)(x)
    x = Reshape((2, 2, 3))(x)
    fake = Conv2DTranspose(2, 3, strides=2, padding="same", activation="tanh")(x)
    image = Input((4, 4, 2))
    y = Conv2D(3, 3, strides=2, padding="same")(image)
    y = LeakyReLU(0.2)(y)
    logit = Dense(1)(Flatten()(y))
    return GAN(Model(z, fake), Model(image, logit))


def numeric_gradient(f, params, h=1e-6):
    """Central differences of a scalar f over every entry of every array in params."""
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            original = p[i].item()
            p[i] = original + h
            plus = f()
            p[i] = original - h
            minus = f()
            p[i] = original
            g[i] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def test_generator_step_follows_the_discriminators_input_gradient(rng, float64):
    """The generator's update must be Adam on dL_G/dtheta_G, where L_G = bce(D(G(z)), 1) with D's
    weights as they are after D's own step: checked by central differences through both models."""
    gan = tiny_gan()
    gan.generator.optimizer.learning_rate = 1e-30  # G's step must not move anything we compare
    real = rng.uniform(-1, 1, (5, 4, 4, 2))
    tinyconv.set_seed(3)
    gan.train_step(real)
    analytic = [g.copy() for g in gan.generator.gradients()]
    # Replay the noise of that step and differentiate L_G numerically, D as it was after its update.
    tinyconv.set_seed(3)
    z = gan.sample_noise(5)
    g_params = gan.generator.trainable_params()

    def generator_loss():
        logits = gan.discriminator.forward(gan.generator.forward(z, training=True), training=True)
        return gan.loss.forward(logits, np.ones_like(logits))

    numeric = numeric_gradient(generator_loss, g_params)
    for a, n in zip(analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-9)


def test_discriminator_step_is_adam_on_the_sum_of_both_losses(rng, float64):
    gan = tiny_gan()
    real = rng.uniform(-1, 1, (5, 4, 4, 2))
    tinyconv.set_seed(4)
    fake = gan.generator.forward(gan.sample_noise(5), training=True)
    d_params = gan.discriminator.trainable_params()
    before = [p.copy() for p in d_params]

    def discriminator_loss():
        d = gan.discriminator
        real_logits, fake_logits = d.forward(real, training=True), d.forward(fake, training=True)
        return (gan.loss.forward(real_logits, np.ones_like(real_logits)) +
                gan.loss.forward(fake_logits, np.zeros_like(fake_logits)))

    numeric = numeric_gradient(discriminator_loss, d_params)
    tinyconv.set_seed(4)
    gan.train_step(real)
    # Adam's first step (t = 1): m = (1 - b1) g, v = (1 - b2) g^2, a = lr sqrt(1 - b2) / (1 - b1).
    lr, b1, b2, eps = 2e-4, 0.5, 0.999, 1e-7
    for b, p, n in zip(before, d_params, numeric):
        expected = lr * np.sqrt(1 - b2) / (1 - b1) * (1 - b1) * n / (np.sqrt((1 - b2) * n * n) + eps)
        np.testing.assert_allclose(b - p, expected, rtol=1e-5, atol=1e-12)


def test_a_bad_discriminator_shape_is_refused():
    z = Input((3,))
    fake = Reshape((3, 1, 1))(Dense(3)(z))
    image = Input((3, 1, 1))
    with pytest.raises(ValueError, match="one logit"):
        GAN(Model(z, fake), Model(image, Flatten()(image)))


@pytest.mark.errors
@pytest.mark.parametrize("ending", ["dense", "layer"])
def test_a_discriminator_that_ends_in_a_sigmoid_is_refused(ending):
    """Its output is already a probability: the GAN's loss on logits would train it on a wrong loss."""
    from tinyconv.layers import Activation
    z = Input((3,))
    fake = Reshape((3, 1, 1))(Dense(3)(z))
    image = Input((3, 1, 1))
    flat = Flatten()(image)
    score = Dense(1, activation="sigmoid")(flat) if ending == "dense" else Activation("sigmoid")(Dense(1)(flat))
    with pytest.raises(ValueError, match=r"the discriminator ends in a sigmoid .*Dense\(1\) without an activation"):
        GAN(Model(z, fake), Model(image, score))


@pytest.mark.errors
def test_one_optimizer_for_both_models_is_refused():
    from tinyconv.optimizers import Adam
    z = Input((3,))
    fake = Reshape((3, 1, 1))(Dense(3)(z))
    image = Input((3, 1, 1))
    shared = Adam(2e-4, beta_1=0.5)
    with pytest.raises(ValueError, match="the same optimizer object; each needs its own"):
        GAN(Model(z, fake), Model(image, Dense(1)(Flatten()(image))), shared, shared)


def test_checkpoint_round_trip_resumes_bit_identically(rng, tmp_path):
    from tinyconv.training import checkpoint
    real = rng.uniform(-1, 1, (8, 4, 4, 2)).astype(np.float32)

    def run(steps, resume_from=None, save_to=None):
        tinyconv.set_seed(0)
        gan = tiny_gan()
        if resume_from is not None:
            assert checkpoint.load_checkpoint(resume_from, gan) == 1
        for _ in range(steps):
            gan.train_step(real)
        if save_to is not None:
            checkpoint.save_checkpoint(save_to, gan, epoch=1)
        return gan

    straight = run(4)
    run(2, save_to=tmp_path / "gan.npz")
    resumed = run(2, resume_from=tmp_path / "gan.npz")
    for a, b in zip(straight.generator.get_weights() + straight.discriminator.get_weights(),
                    resumed.generator.get_weights() + resumed.discriminator.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_gan_changes_neither_model(rng, tmp_path):
    from tinyconv.training import checkpoint
    gan = tiny_gan()
    checkpoint.save_checkpoint(tmp_path / "gan.npz", gan, epoch=0)
    other = tiny_gan(latent=5)
    before = other.generator.get_weights() + other.discriminator.get_weights()
    with pytest.raises(ValueError, match="generator"):
        checkpoint.load_checkpoint(tmp_path / "gan.npz", other)
    for a, b in zip(before, other.generator.get_weights() + other.discriminator.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="a GAN's checkpoint .* not one model's"):
        checkpoint.load_checkpoint(tmp_path / "gan.npz", gan.generator)


@pytest.mark.training
def test_a_gan_trains_through_fit_with_callbacks_and_resumes_bit_for_bit(rng, tmp_path):
    """fit drives the GAN's own train_step: History, CSVLogger and TrainingCheckpoint see its logs,
    and a run stopped after epoch 1 and resumed ends where a straight one does."""
    from tinyconv.callbacks import CSVLogger, TrainingCheckpoint
    real = rng.uniform(-1, 1, (20, 4, 4, 2)).astype(np.float32)

    def run(epochs, folder, restore=False):
        tinyconv.set_seed(0)
        gan = tiny_gan()
        callbacks = [CSVLogger(folder / "log.csv"), TrainingCheckpoint(folder / "state.npz", restore=restore)]
        history = gan.fit(real, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)
        return gan, history

    straight, history = run(3, tmp_path)
    assert sorted(history.history) == ["d_fake", "d_loss", "d_real", "g_loss"] and history.epoch == [0, 1, 2]
    assert straight.generator.optimizer.iterations == straight.discriminator.optimizer.iterations == 9
    (tmp_path / "b").mkdir()
    run(1, tmp_path / "b")
    resumed, history = run(3, tmp_path / "b", restore=True)
    assert history.epoch == [1, 2]
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()


@pytest.mark.training
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_refused_gan_step_leaves_both_models_and_optimizers_as_before(rng):
    """The generator's loss overflows after the discriminator stepped: that step is undone too
    (fails if the discriminator keeps its update)."""
    import copy
    real = rng.uniform(-1, 1, (6, 4, 4, 2)).astype(np.float32)
    gan = tiny_gan()
    gan.train_step(real)
    before = ([w.copy() for w in gan.get_weights()], copy.deepcopy(gan.discriminator.optimizer.get_state()),
              copy.deepcopy(gan.generator.optimizer.get_state()), copy.deepcopy(tinyconv.random.get_state()))
    gan.discriminator.optimizer.learning_rate = 1e38  # its step overflows its weights: G's loss is NaN
    logs = gan.train_step(real)
    assert np.isfinite(logs["d_loss"]) and not np.isfinite(logs["g_loss"])
    for a, b in zip(before[0], gan.get_weights()):
        np.testing.assert_array_equal(a, b)
    state = gan.discriminator.optimizer.get_state()
    assert state.pop("learning_rate") == 1e38 and before[1].pop("learning_rate") == 2e-4  # the one change made here
    assert repr(state) == repr(before[1])
    assert repr(gan.generator.optimizer.get_state()) == repr(before[2])
    assert tinyconv.random.get_state() == before[3]


def test_a_step_on_each_device_gives_the_cpus_losses(rng, device):
    real = rng.uniform(-1, 1, (6, 4, 4, 2)).astype(np.float32)
    results = []
    for name in ("cpu", device):
        tinyconv.set_device(name)
        tinyconv.set_seed(7)
        results.append(tiny_gan().train_step(real))
    for key in results[0]:
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-4, abs=1e-5), key
