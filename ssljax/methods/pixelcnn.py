"""PixelCNN (van den Oord et al. 2016; lecture 003's autoregressive models): the gated PixelCNN of
`ssljax/models/pixelcnn.py` trained by maximum likelihood, a 256-way softmax per sub-pixel, optionally conditioned
on the class. The loss is the negative log-likelihood in nats per sub-pixel; "bits_per_dim" is the same in bits.
No augmentation: the model learns the data's own distribution. Evaluation reads the last horizontal stack, averaged
over the image, for the feature evaluators; `likelihood` and `pixelcnn_samples` evaluate the model as a model."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.methods import Method, refuse_encoder_training
from ssljax.models.pixelcnn import LEVELS, GatedPixelCNN, downsample

SCHEMA = {
  "features": int,  # Width of both stacks (a multiple of the image's channels).
  "num_layers": int,
  "first_kernel": int,  # The first layer's (mask A) kernel side, odd (the paper: 7) ...
  "kernel": int,  # ... and every later layer's (3).
  "conditional": bool,  # A class-conditional bias in every gate.
  "super_resolution": int,  # f > 0: model p(x | x averaged over f x f blocks) (0: off).
}


def quantize(images: jax.Array) -> jax.Array:
  """[0, 1] floats -> int32 sub-pixel values in [0, 255]."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * (LEVELS - 1)).astype(jnp.int32)


def low_res_of(values: jax.Array, factor: int) -> jax.Array | None:
  """Sub-pixel values [N, H, W, C] -> what a super-resolution PixelCNN is conditioned on: their [0, 1] image
  averaged over factor x factor blocks (None when factor is 0)."""
  return downsample(values / (LEVELS - 1), factor) if factor else None


class PixelCNN(nn.Module):
  """The method's model: inputs {"image": int32 [N, H, W, C], "label"} -> {"logits", "targets", "features"}."""

  encoder: GatedPixelCNN

  def _labels(self, labels):
    return labels if self.encoder.num_classes else None

  def __call__(self, inputs, train: bool = True):
    logits, hidden = self.encoder(inputs["image"], self._labels(inputs["label"]), inputs.get("low_res"))
    return {"logits": logits, "targets": inputs["image"], "features": jnp.mean(hidden, axis=(1, 2))}

  def pixel_logits(self, images, labels, low_res=None):
    """Sub-pixel values int [N, H, W, C] (and the low-resolution image a super-resolution model is conditioned on)
    -> logits [N, H, W, C, 256] (the likelihood, the sampler)."""
    return self.encoder(images, self._labels(labels), low_res)[0]

  def encode(self, images):
    """The last horizontal stack averaged over the image; a conditional model's averaged over every class as well
    (one pass per class: evaluation must not read the test labels, and a zero condition was never trained)."""
    values = quantize(images)
    low_res = low_res_of(values, self.encoder.low_res_factor)
    classes = range(self.encoder.num_classes) if self.encoder.num_classes else [None]
    per_class = [
      self.encoder(values, None if y is None else jnp.full(images.shape[:1], y), low_res)[1] for y in classes
    ]
    return jnp.mean(jnp.stack(per_class), axis=(0, 2, 3))


def make_inputs(batch, key, factor: int):
  del key  # Nothing is drawn.
  values = quantize(batch["image"])
  inputs = {"image": values, "label": batch["label"]}
  return inputs | ({"low_res": low_res_of(values, factor)} if factor else {})


def pixelcnn_loss(outputs, batch, step):
  """The mean NLL per sub-pixel (nats); NaN when the batch held a non-finite pixel, which quantising would have
  hidden (the shared step then skips the update, as for every method)."""
  del step
  nll = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs["logits"], outputs["targets"]))
  nll = jnp.where(jnp.all(jnp.isfinite(batch["image"])), nll, jnp.nan)
  return nll, {"bits_per_dim": nll / np.log(2.0), "embedding_std": losses.embedding_std(outputs["features"])}


def build(config, info) -> Method:
  settings = config.pixelcnn
  channels = config.dataset.channels
  require = {
    "features": settings.features >= channels and settings.features % channels == 0,
    "num_layers": settings.num_layers >= 1,
    "first_kernel": settings.first_kernel >= 3 and settings.first_kernel % 2 == 1,
    "kernel": settings.kernel >= 3 and settings.kernel % 2 == 1,
    "conditional": not settings.conditional or info.num_classes > 0,
    "super_resolution": settings.super_resolution >= 0
    and (not settings.super_resolution or config.dataset.image_size % settings.super_resolution == 0),
  }
  for key, ok in require.items():
    if not ok:
      raise ConfigError(
        f"config.pixelcnn.{key}: {settings[key]!r} is invalid (features a multiple of the {channels} channel(s), "
        "num_layers >= 1, odd kernels >= 3, conditional needs labelled data, super_resolution >= 0 divides the image"
        " size)"
      )
  refuse_encoder_training(config, "a PixelCNN's is the gated PixelCNN, on sub-pixel values")
  model = PixelCNN(
    GatedPixelCNN(
      settings.features,
      settings.num_layers,
      settings.first_kernel,
      settings.kernel,
      channels,
      info.num_classes if settings.conditional else 0,
      settings.super_resolution,
    )
  )
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, factor=settings.super_resolution),
    loss=pixelcnn_loss,
    views_per_image=1,
    encoder_input=jax.jit(quantize),
  )
