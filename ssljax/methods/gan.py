"""A GAN (Goodfellow et al. 2014; lecture 003) with DCGAN's networks (`ssljax/models/gan.py`): two players on the
shared step, the discriminator first (`discriminator_updates` = k updates, each on its own 1/k of the batch) and
then the generator, each with its own Adam. Objectives (`losses.gan_discriminator_loss`): the non-saturating one
of the paper and DCGAN, hinge, or least squares.

As the PyTorch DCGAN example: the discriminator sees the real and the generated images as two batches (BatchNorm
statistics of each alone), the generator's update runs the discriminator in train mode, and the generator draws
as many noise vectors as each discriminator update reads images. Unlike it, and as Goodfellow et al.'s Algorithm
1, the generator's update draws fresh noise rather than reusing the discriminator update's images. Images are
scaled to [-1, 1], the generator's tanh range. Evaluation reads the discriminator, as the DCGAN paper evaluated it:
every hidden layer max-pooled to 4 x 4 (`pooled_features`), its BatchNorm statistics the running ones (updated by
the real and the generated batches alike, as in the example; the fair random network's are measured on real
images, `ssljax/baselines.py`)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.methods import Method, Player, refuse_encoder_training
from ssljax.models.gan import Discriminator, Generator, doublings, pooled_features

SCHEMA = {
  "objective": str,  # "non_saturating" | "hinge" | "least_squares".
  "latent_dim": int,  # The noise's dimension (DCGAN: 100).
  "generator_width": int,  # The generator's last hidden width (ngf); it doubles towards the noise.
  "discriminator_width": int,  # The discriminator's first width (ndf); it doubles towards the logit.
  "discriminator_updates": int,  # k discriminator updates per generator update.
}


def to_tanh_range(images):
  """[0, 1] images -> [-1, 1], the generator's output range (what the discriminator reads)."""
  return images * 2.0 - 1.0


def from_tanh_range(images):
  """A generator's [-1, 1] images -> [0, 1]."""
  return (images + 1.0) / 2.0


class GAN(nn.Module):
  """inputs {"image": real images [N, S, S, C] in [-1, 1], "noise": [N, Z]} -> the discriminator's raw outputs:
  "real_logits" [N] and "fake_logits" for `player` "discriminator"; "fake_logits" and the "generated" images
  [N / k, S, S, C] for "generator"; the discriminator's outputs (and every variable) for None (initialisation)."""

  encoder: Discriminator  # The discriminator; named so because evaluation reads its features.
  generator: Generator
  discriminator_updates: int = 1

  def __call__(self, inputs, train: bool = True, player: str | None = None):
    noise = inputs["noise"]
    if player == "generator":  # As many generated images as each discriminator update saw real ones.
      noise = noise.reshape(-1, self.discriminator_updates, noise.shape[-1])[:, 0]
    generated = self.generator(noise, train=train)
    fake_logits, _ = self.encoder(generated, train=train)
    if player == "generator":
      return {"fake_logits": fake_logits, "generated": generated}
    real_logits, _ = self.encoder(inputs["image"], train=train)
    return {"real_logits": real_logits, "fake_logits": fake_logits}

  def generate(self, noise):
    """Noise [N, Z] -> images [N, S, S, C] in [0, 1], BatchNorm on the batch's own statistics (the DCGAN example
    never puts its generator in eval mode); apply with mutable=["batch_stats"] and drop what it writes."""
    return from_tanh_range(self.generator(noise, train=True))

  def encode(self, images):
    return pooled_features(self.encoder(to_tanh_range(images), train=False)[1])


def make_inputs(batch, key, latent_dim: int):
  images = batch["image"]
  return {"image": to_tanh_range(images), "noise": jax.random.normal(key, (images.shape[0], latent_dim))}


def discriminator_loss(outputs, batch, step, objective: str):
  del batch, step
  loss = losses.gan_discriminator_loss(outputs["real_logits"], outputs["fake_logits"], objective)
  return loss, {"real_output": jnp.mean(outputs["real_logits"]), "fake_output": jnp.mean(outputs["fake_logits"])}


def generator_loss(outputs, batch, step, objective: str):
  """The generator's objective, and "sample_std": the generated pixels' standard deviation across the batch,
  averaged over pixels, which falls towards 0 when the generator collapses onto a few images."""
  del batch, step
  sample_std = jnp.mean(jnp.std(outputs["generated"].astype(jnp.float32), axis=0))
  return losses.gan_generator_loss(outputs["fake_logits"], objective), {"sample_std": sample_std}


def build(config, info) -> Method:
  del info
  settings = config.gan
  if settings.objective not in losses.GAN_OBJECTIVES:
    raise ConfigError(f"config.gan.objective: unknown {settings.objective!r} ({', '.join(losses.GAN_OBJECTIVES)})")
  for key in ("latent_dim", "generator_width", "discriminator_width", "discriminator_updates"):
    if settings[key] < 1:
      raise ConfigError(f"config.gan.{key}: {settings[key]} must be >= 1")
  try:
    doublings(config.dataset.image_size)
  except ValueError as error:
    raise ConfigError(f"config.dataset.{error}") from None
  refuse_encoder_training(config, "a GAN's is DCGAN's discriminator, trained adversarially")
  model = GAN(
    Discriminator(settings.discriminator_width),
    Generator(config.dataset.image_size, config.dataset.channels, settings.generator_width),
    settings.discriminator_updates,
  )
  objective = settings.objective
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, latent_dim=settings.latent_dim),
    loss=None,
    views_per_image=1,
    encoder_input=to_tanh_range,
    players=(
      Player(
        "discriminator",
        "encoder",
        functools.partial(discriminator_loss, objective=objective),
        settings.discriminator_updates,
      ),
      Player("generator", "generator", functools.partial(generator_loss, objective=objective)),
    ),
  )
