"""Auto-encoders as the lectures teach them: a deterministic or variational (reparameterised) bottleneck between
the encoder's features and a transposed-convolution decoder, optionally conditioned on the class (CVAE)."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvDecoder(nn.Module):
  """[N, Z] -> pixel logits [N, S, S, C]: a Dense layer to a `width`-channel grid of S/4 px, then two stride-2
  transposed convolutions (width/2 channels, then C) with ReLU between, as DCGAN's generator at small scale."""

  image_size: int
  channels: int
  width: int = 64

  @nn.compact
  def __call__(self, z):
    side = self.image_size // 4
    x = nn.relu(nn.Dense(side * side * self.width)(z)).reshape(z.shape[0], side, side, self.width)
    x = nn.relu(nn.ConvTranspose(self.width // 2, (4, 4), strides=(2, 2), padding="SAME")(x))
    return nn.ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding="SAME")(x).astype(jnp.float32)


class AutoEncoder(nn.Module):
  """encoder -> latent (q(z | x) = N(mean, exp(logvar)) when `variational`) -> decoder -> pixel probabilities.

  Attributes:
    num_classes: > 0 for a conditional model: the one-hot class joins the encoder's features before the latent
      layer and the latent before the decoder (Sohn et al. 2015).
  inputs: {"image": the encoder's input [N, S, S, C] (noised for a denoising AE, with a hole for a context
  encoder), "target": the clean image the decoder must give back, "label": int [N], optionally "target_weights"
  [N, S, S, 1] (the context encoder's loss weights)}; "target" and "target_weights" pass through to the outputs.
  """

  encoder: nn.Module
  decoder: nn.Module
  latent_dim: int
  variational: bool = False
  num_classes: int = 0

  def setup(self):
    self.to_latent = nn.Dense(self.latent_dim * (2 if self.variational else 1))

  def _with_class(self, x, labels):
    if not self.num_classes:
      return x
    return jnp.concatenate([x, jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)], axis=-1)

  def posterior(self, images, labels, train: bool = False):
    """(encoder features [N, F], latent mean [N, Z], log-variance [N, Z] or None for a deterministic AE)."""
    features = self.encoder(images, train=train)
    stats = self.to_latent(self._with_class(features.astype(jnp.float32), labels))
    if not self.variational:
      return features, stats, None
    mean, logvar = jnp.split(stats, 2, axis=-1)
    return features, mean, logvar

  def decode(self, z, labels):
    """Latents [N, Z] (and classes [N]) -> pixel probabilities [N, S, S, C]."""
    return jax.nn.sigmoid(self.decoder(self._with_class(z, labels)))

  def __call__(self, inputs, train: bool = True):
    features, mean, logvar = self.posterior(inputs["image"], inputs["label"], train)
    outputs = {"features": features.astype(jnp.float32), "mean": mean, "target": inputs["target"]}
    if "target_weights" in inputs:
      outputs["target_weights"] = inputs["target_weights"]
    z = mean
    if self.variational:  # The reparameterisation trick; the noise from the step's "dropout" stream.
      z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(self.make_rng("dropout"), mean.shape)
      outputs["logvar"] = logvar
    outputs["reconstruction"] = self.decode(z, inputs["label"])
    return outputs

  def encode(self, images):
    return self.encoder(images, train=False)
