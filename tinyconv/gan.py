r"""Two models trained against each other: a generative adversarial network, by explicit backprop.

The generator ``G`` maps noise ``z`` (N, latent_dim) to images; the discriminator ``D`` maps an image
to one logit ``s``, and ``sigmoid(s)`` is its belief that the image is real. With the binary
cross-entropy on logits, ``bce(s, y) = max(s, 0) - s*y + log(1 + exp(-|s|))`` averaged over the batch:

Discriminator step (G fixed):

    fake = G(z)
    L_D = bce(D(real), 1) + bce(D(fake), 0)

    backward through D twice (once per batch, each with its own batch statistics), add the two
    parameter gradients, one Adam step on D's parameters.

Generator step (D fixed): the non-saturating loss of Goodfellow et al. (2014),

    L_G = bce(D(fake), 1)

    dL/ds = (sigmoid(s) - 1) / N                  the loss's gradient at D's output
    dL/dfake = D.backward(dL/ds)                  D's *input* gradient: D is not updated,
                                                  it only tells G which way each pixel should move
    G.backward(dL/dfake)                          on through G, filling G's grads
    one Adam step on G's parameters.

The generator never sees a real image: everything it learns arrives through ``dL/dfake``, the
discriminator's input gradient, which ``train_step`` keeps (``last_image_gradient``, beside the
fake batch ``last_fake``) for a student to look at. Both steps use the same fake batch, as the
classic DCGAN recipe does; D's second forward pass (after its update) is what the generator step
differentiates.

The latent noise comes from tinyconv's seeded ``"latent"`` generator, so one seed fixes the run.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend, checkpoint, config, random
from .losses import BinaryCrossentropy
from .optimizers import Adam

FORMAT = "tinyconv-gan-checkpoint-1"


class GAN:
    """A generator and a discriminator with an optimizer each (DCGAN's ``Adam(2e-4, beta_1=0.5)``
    unless given).

    Parameters
    ----------
    generator : a Model from (latent_dim,) to images (H, W, C), usually ending in tanh.
    discriminator : a Model from the same images to one logit (a final Dense(1), no activation).
    """

    def __init__(self, generator, discriminator, generator_optimizer=None, discriminator_optimizer=None):
        # Shapes without the batch axis.
        noise, images = tuple(generator.input_shape[1:]), tuple(generator.output_shape[1:])
        if len(noise) != 1:
            raise ValueError(f"GAN: the generator must take noise vectors (latent_dim,), got inputs of "
                             f"shape {noise}")
        if tuple(discriminator.input_shape[1:]) != images:
            raise ValueError(f"GAN: the discriminator takes images of shape {discriminator.input_shape[1:]}, "
                             f"the generator makes {images}")
        if tuple(discriminator.output_shape[1:]) != (1,):
            raise ValueError(f"GAN: the discriminator must output one logit per image, shape (1,), "
                             f"got {discriminator.output_shape[1:]}")
        last = discriminator.layers[-1]
        if last.ends_in_sigmoid or last.ends_in_softmax:
            raise ValueError(f"GAN: the discriminator ends in a {'sigmoid' if last.ends_in_sigmoid else 'softmax'} "
                             f"(layer {last.name!r}); the GAN's loss takes its raw score (a logit) and applies "
                             "the sigmoid itself, so end it in Dense(1) without an activation")
        if generator_optimizer is not None and generator_optimizer is discriminator_optimizer:
            raise ValueError("GAN: the generator and the discriminator got the same optimizer object; each needs "
                             "its own (its moments belong to one model's parameters): pass two, e.g. "
                             "Adam(2e-4, beta_1=0.5) twice")
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = noise[0]
        self.loss = BinaryCrossentropy(from_logits=True)
        # compile() gives each model its optimizer (and checkpoints their state); the losses here
        # are computed by this class, on the discriminator's logits.
        generator.compile(optimizer=generator_optimizer or Adam(2e-4, beta_1=0.5), loss=self.loss)
        discriminator.compile(optimizer=discriminator_optimizer or Adam(2e-4, beta_1=0.5), loss=self.loss)
        self.last_fake = self.last_image_gradient = None  # kept from the last step, to look at

    def sample_noise(self, n: int) -> np.ndarray:
        """``n`` latent vectors from N(0, 1), drawn from the seeded ``"latent"`` generator."""
        z = random.generator("latent").standard_normal((n, self.latent_dim))
        return z.astype(config.float_dtype())

    def _bce(self, logits, target: float):
        """The loss against ``target``, its gradient at the logits, and D's mean belief sigmoid(s),
        which the loss computed already; the scalars stay on the device."""
        xp = backend.get_array_module(logits)
        loss = self.loss.value(logits, xp.full(logits.shape, target, dtype=logits.dtype))
        belief = self.loss.cache[0].mean()
        return loss, self.loss.backward(), belief

    def train_step(self, real) -> dict[str, float]:
        """One discriminator step and one generator step on a batch of real images.

        Returns the two losses and D's mean belief on the real and the fake batch (before its update).
        Raises ``FloatingPointError`` on a non-finite loss, before any parameter changes.
        """
        g, d = self.generator, self.discriminator
        real = d.prepare_input(real)
        fake = g.forward(self.sample_noise(real.shape[0]), training=True)
        xp = backend.get_array_module(real)

        # Discriminator: real images are labelled 1, generated ones 0; G is left alone.
        d_loss_real, grad, d_real = self._bce(d.forward(real, training=True), 1.0)
        d.backward(grad, input_gradient=False)
        real_grads = [gradient.copy() for gradient in d.gradients()]
        d_loss_fake, grad, d_fake = self._bce(d.forward(fake, training=True), 0.0)
        d.backward(grad, input_gradient=False)
        # One device-to-host transfer for the discriminator's scalars.
        d_loss, d_real, d_fake = (float(v) for v in backend.to_numpy(
            xp.stack([d_loss_real + d_loss_fake, d_real, d_fake])))
        if not math.isfinite(d_loss):
            raise FloatingPointError(f"GAN: the discriminator's loss is {d_loss}; lower the learning rates")
        d.optimizer.step(d.trainable_params(), [a + b for a, b in zip(real_grads, d.gradients())])

        # Generator: it wants D to call its images real; the gradient reaches it through D's input.
        g_loss, grad, _ = self._bce(d.forward(fake, training=True), 1.0)
        g_loss = float(backend.to_numpy(g_loss))
        if not math.isfinite(g_loss):
            raise FloatingPointError(f"GAN: the generator's loss is {g_loss}; lower the learning rates")
        self.last_fake, self.last_image_gradient = fake, d.backward(grad)
        g.backward(self.last_image_gradient, input_gradient=False)
        g.optimizer.step(g.trainable_params(), g.gradients())
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake}

    def generate(self, noise) -> np.ndarray:
        """Images for the given latent vectors, with the generator in inference mode (host array)."""
        return backend.to_numpy(self.generator.forward(noise, training=False))

    # --- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, path, epoch: int, arrays: dict | None = None, data=None) -> None:
        """Both models, both optimizers, the random generators and ``arrays`` (e.g. the fixed noise of
        the progress grids), after ``epoch`` finished epochs, in one atomically written file."""
        checkpoint.write(path, {"format": FORMAT, "epoch": int(epoch),
                                "generator": checkpoint.capture(self.generator, epoch),
                                "discriminator": checkpoint.capture(self.discriminator, epoch, data=data),
                                "arrays": {key: np.asarray(value) for key, value in (arrays or {}).items()}})

    def load_checkpoint(self, path, data=None) -> tuple[int, dict]:
        """Restore a ``save_checkpoint`` file; returns ``(finished epochs, arrays)``. Both models are
        checked against the file before either changes."""
        state = checkpoint.read(path, expected_format=FORMAT)
        source = str(path)
        checkpoint.check(state["generator"], self.generator, source=f"{source} (generator)")
        checkpoint.check(state["discriminator"], self.discriminator, data=data, source=f"{source} (discriminator)")
        checkpoint.restore(state["generator"], self.generator, source=f"{source} (generator)")
        checkpoint.restore(state["discriminator"], self.discriminator, data=data,
                           source=f"{source} (discriminator)")
        return int(state["epoch"]), state["arrays"]

