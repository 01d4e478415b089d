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

``GAN`` is a ``Model`` whose ``train_step`` does both steps, so ``fit`` trains it like any model,
with every callback, the progress line, Ctrl-C and ``TrainingCheckpoint`` (both models, both
optimizers and every generator in one file), and its logs are ``d_loss``, ``g_loss``, ``d_real``
and ``d_fake``. A step is refused as a whole: when either loss or its gradients are NaN or inf,
both models, both optimizers, BatchNorm's statistics and the generators are as before the batch.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, config, random
from . import checkpoint
from ..losses import BinaryCrossentropy
from ..model import Model
from ..optimizers import Adam
from .loop import keep_step_state, refused_loss

LOGS = ("d_loss", "g_loss", "d_real", "d_fake")


class GAN(Model):
    """A generator and a discriminator with an optimizer each (DCGAN's ``Adam(2e-4, beta_1=0.5)``
    unless given), trained together by ``fit(images, batch_size=..., epochs=...)``.

    Parameters
    ----------
    generator : a Model from (latent_dim,) to images (H, W, C), usually ending in tanh.
    discriminator : a Model from the same images to one logit (a final Dense(1), no activation).
    """

    def __init__(self, generator, discriminator, generator_optimizer=None, discriminator_optimizer=None,
                 name: str | None = None):
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
        super().__init__(name=name)
        self.generator, self.discriminator = generator, discriminator
        # What a checkpoint and a refused step see:
        self.graph_layers = [*generator.graph_layers, *discriminator.graph_layers]
        self.latent_dim = noise[0]
        self.loss = BinaryCrossentropy(from_logits=True)
        # compile() gives each model its optimizer (and checkpoints their state); the losses here
        # are computed by this class, on the discriminator's logits.
        generator.compile(optimizer=generator_optimizer or Adam(2e-4, beta_1=0.5), loss=self.loss)
        discriminator.compile(optimizer=discriminator_optimizer or Adam(2e-4, beta_1=0.5), loss=self.loss)
        self.last_fake = self.last_image_gradient = None  # kept from the last step, to look at

    # --- what fit needs to know ---------------------------------------------------------------------
    @property
    def compiled(self) -> bool:
        return self.generator.compiled and self.discriminator.compiled

    @property
    def metrics_names(self) -> list[str]:
        return list(LOGS)

    @property
    def needs_labels(self) -> bool:
        return False

    def image_shape(self) -> tuple:
        return tuple(self.discriminator.input_shape[1:])

    def forward(self, x, training: bool = False, keep_caches: bool = True):
        """The generator's images for noise ``x`` (N, latent_dim), on the device."""
        return self.generator.forward(x, training, keep_caches)

    def summary(self, *args, **kwargs) -> None:
        """The generator's table, then the discriminator's (``Model.summary``'s arguments)."""
        self.generator.summary(*args, **kwargs)
        self.discriminator.summary(*args, **kwargs)

    # --- the step -----------------------------------------------------------------------------------
    def sample_noise(self, n: int) -> np.ndarray:
        """``n`` latent vectors from N(0, 1), drawn from the seeded ``"latent"`` generator."""
        z = random.generator("latent").standard_normal((n, self.latent_dim))
        return z.astype(config.float_dtype())

    def _bce(self, logits, target: float):
        """The loss against ``target``, its gradient at the logits, and D's mean belief sigmoid(s),
        which the loss computed already; the scalars stay on the device."""
        xp = backend.get_array_module(logits)
        loss = self.loss.value(logits, xp.full(logits.shape, target, dtype=logits.dtype))
        return loss, self.loss.backward(), self.loss.probabilities().mean()

    def train_step(self, data) -> dict[str, float]:
        """One discriminator step and one generator step on a batch of real images (``data``, or
        its first element when it is a tuple).

        Returns the two losses and D's mean belief on the real and the fake batch (before its
        update). A non-finite loss or gradient refuses the whole step (see the module) and shows
        as NaN or inf in the logs.
        """
        g, d = self.generator, self.discriminator
        real = d.prepare_input(data[0] if isinstance(data, tuple) else data)
        put_back = keep_step_state(self.layers)
        xp = backend.get_array_module(real)
        with np.errstate(over="ignore", invalid="ignore"):
            fake = g.forward(self.sample_noise(real.shape[0]), training=True)
            # Discriminator: real images are labelled 1, generated ones 0; G is left alone.
            d_loss_real, grad, d_real = self._bce(d.forward(real, training=True), 1.0)
            d.backward(grad, input_gradient=False)
            real_grads = [gradient.copy() for gradient in d.gradients()]
            d_loss_fake, grad, d_fake = self._bce(d.forward(fake, training=True), 0.0)
            d.backward(grad, input_gradient=False)
            d_grads = [a + b for a, b in zip(real_grads, d.gradients())]
        # One device-to-host transfer for the discriminator's scalars and its gradients' check.
        d_loss, d_real, d_fake, d_check = (float(v) for v in backend.to_numpy(xp.stack(
            [d_loss_real + d_loss_fake, d_real, d_fake, sum(gradient.sum() for gradient in d_grads)])))
        logs = {"d_loss": d_loss, "g_loss": math.nan, "d_real": d_real, "d_fake": d_fake}
        if not (math.isfinite(d_loss) and math.isfinite(d_check)):
            put_back()
            logs["d_loss"] = refused_loss(d_loss)
            return logs
        d_weights, d_moments = [w.copy() for w in d.trainable_params()], d.optimizer.snapshot()
        d.optimizer.step(d.trainable_params(), d_grads)

        # Generator: it wants D to call its images real; the gradient reaches it through D's input.
        with np.errstate(over="ignore", invalid="ignore"):
            g_loss, grad, _ = self._bce(d.forward(fake, training=True), 1.0)
            image_gradient = d.backward(grad)
            g.backward(image_gradient, input_gradient=False)
        g_loss, g_check = (float(v) for v in backend.to_numpy(xp.stack(
            [g_loss, sum(gradient.sum() for gradient in g.gradients())])))
        if not (math.isfinite(g_loss) and math.isfinite(g_check)):  # undo the discriminator's step too
            for weight, kept in zip(d.trainable_params(), d_weights):
                weight[...] = kept
            d.optimizer.restore_snapshot(d_moments)
            put_back()
            logs["g_loss"] = refused_loss(g_loss)
            return logs
        g.optimizer.step(g.trainable_params(), g.gradients())
        self.last_fake, self.last_image_gradient = fake, image_gradient
        logs["g_loss"] = g_loss
        return logs

    def test_step(self, data):
        raise TypeError(f"GAN {self.name!r}: evaluate has no single loss to report for a GAN; score its "
                        "images instead, e.g. with the Fréchet distance (tinyconv.frechet)")

    def generate(self, noise) -> np.ndarray:
        """Images for the given latent vectors, with the generator in inference mode (host array)."""
        return backend.to_numpy(self.generator.forward(noise, training=False, keep_caches=False))

    # --- checkpoints: both models and both optimizers -------------------------------------------------
    def training_state(self) -> dict:
        return {"generator": checkpoint.model_state(self.generator),
                "discriminator": checkpoint.model_state(self.discriminator)}

    def check_training_state(self, state: dict, source: str):
        if "generator" not in state or "discriminator" not in state:
            raise ValueError(f"{source}: not a GAN's checkpoint (it holds one model's weights, not a generator's "
                             "and a discriminator's)")
        models = {"generator": self.generator, "discriminator": self.discriminator}
        return {part: checkpoint.check_model_state(state[part], model, f"{source} ({part})")
                for part, model in models.items()}

    def set_training_state(self, state: dict, checked) -> None:
        checkpoint.set_model_state(state["generator"], self.generator, checked["generator"])
        checkpoint.set_model_state(state["discriminator"], self.discriminator, checked["discriminator"])
