"""What the classification pretext tasks share (rotation, jigsaw, context prediction; lecture 002): the image cut
into parts (whole rotated images, shuffled tiles, a pair of patches), every part through the one encoder, the
parts' features concatenated into a classifier of the pretext label."""

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.methods import Method

GRID = 3  # Jigsaw's tiles and context prediction's patches: a 3 x 3 grid.
# The settings of the tasks that cut a grid (`grid_patches`): the side of the augmented view it is cut from, the
# parts' side, gap and jitter (px), per-part normalisation, and the head's hidden width (0: a linear head).
GRID_SCHEMA = {
  "view_size": int,
  "patch_size": int,
  "gap": int,
  "jitter": int,
  "normalize_parts": bool,
  "hidden_dim": int,
}


class PretextClassifier(nn.Module):
  """encoder per part -> concatenated features -> MLP -> pretext logits.

  inputs: {"parts": [N, P, h, w, C], "target": int [N]}. The N x P parts go through the encoder in one call (its
  weights shared across parts: Noroozi's siamese "context-free network", Doersch's paired towers); the head is
  the references' fc7/fc8 (a hidden layer, BatchNorm, ReLU; `hidden_dim` 0: one linear layer, as rotation's
  ResNet heads). "features", read by the online probe, are the parts' encoder features averaged per image
  ([N, F]; with one part, each part's own).
  """

  encoder: nn.Module
  num_classes: int
  hidden_dim: int

  @nn.compact
  def __call__(self, inputs, train: bool = True):
    parts = inputs["parts"]
    n, p = parts.shape[:2]
    features = self.encoder(parts.reshape(n * p, *parts.shape[2:]), train=train).reshape(n, p, -1)
    head = models.MLPHead(
      out_dim=self.num_classes,
      num_layers=2 if self.hidden_dim else 1,
      hidden_dim=self.hidden_dim or None,
      last_bias=True,
      name="head",
    )
    return {
      "features": features.mean(axis=1).astype(jnp.float32),
      "logits": head(features.reshape(n, -1), train=train),
      "target": inputs["target"],
    }

  def encode(self, images):
    return self.encoder(images, train=False)


def pretext_loss(outputs, batch, step):
  """Cross-entropy of the pretext label (mean over the examples), its accuracy, and the collapse metric."""
  del batch, step  # The labels are the task's own.
  logits = outputs["logits"].astype(jnp.float32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, outputs["target"]).mean()
  return loss, {
    "pretext_accuracy": jnp.mean(jnp.argmax(logits, -1) == outputs["target"]),
    "embedding_std": losses.embedding_std(outputs["features"]),
  }


def grid_patches(image, key, patch: int, gap: int, jitter: int):
  """A 3 x 3 grid of square patches of `image` [S, S, C] -> [9, patch, patch, C], raster order.

  Neighbouring patches are `gap` px apart and each moves by its own uniform offset in [-jitter, jitter] per axis
  (Doersch et al.: a gap of half a patch and up to 7 px of jitter; Noroozi & Favaro: 64 px tiles drawn inside 75 px
  cells, i.e. an 11 px gap and +-5 px), so no low-level cue (a continuing line, a texture boundary) gives the
  answer away. The grid's place in the image is uniform over the room left.
  """
  size = image.shape[0]
  span = GRID * patch + (GRID - 1) * gap + 2 * jitter
  origin_key, jitter_key = jax.random.split(key)
  origin = jax.random.randint(origin_key, (2,), 0, size - span + 1) + jitter
  offsets = jax.random.randint(jitter_key, (GRID * GRID, 2), -jitter, jitter + 1)
  cells = jnp.stack(jnp.meshgrid(jnp.arange(GRID), jnp.arange(GRID), indexing="ij"), -1).reshape(-1, 2)
  corners = origin + cells * (patch + gap) + offsets
  channels = image.shape[-1]
  return jax.vmap(lambda corner: jax.lax.dynamic_slice(image, (*corner, 0), (patch, patch, channels)))(corners)


def check_grid(settings, key: str):
  """The grid of `grid_patches` fits the view it is cut from."""
  span = GRID * settings.patch_size + (GRID - 1) * settings.gap + 2 * settings.jitter
  if min(settings.patch_size, settings.gap + 1, settings.jitter + 1) < 1:
    raise ConfigError(f"{key}: patch_size must be >= 1, gap and jitter >= 0")
  if span > settings.view_size:
    raise ConfigError(
      f"{key}: 3 x patch_size + 2 x gap + 2 x jitter = {span} px does not fit in view_size {settings.view_size}"
    )


def normalize_parts(parts):
  """Each part [..., h, w, C] to zero mean and unit standard deviation per channel (Noroozi & Favaro normalise
  every tile on its own, so that tiles cannot be matched by their brightness or contrast); flat parts become 0."""
  mean = parts.mean(axis=(-3, -2), keepdims=True)
  std = parts.std(axis=(-3, -2), keepdims=True)
  return (parts - mean) / jnp.maximum(std, 1e-2)


def build_pretext(
  config, settings, num_classes: int, view_size: int, part_size: int, cut: Callable, views_per_image: int = 1
):
  """The Method of a pretext task. `cut(views [N, s, s, C], key) -> {"parts", "target"}` turns one augmented view
  per image (`config.augment` at `view_size` px) into the task's parts (`part_size` px) and labels."""
  if config.model.name != "resnet":
    raise ConfigError(f"config.model: {config.method} needs a ResNet encoder (it encodes parts and whole images)")
  if settings.hidden_dim < 0:
    raise ConfigError(f"config.{config.method}.hidden_dim: {settings.hidden_dim} is negative")
  dtype = jnp.dtype(config.dtype)
  encoder = models.build_encoder(config.model, config.dataset.image_size, dtype)
  if part_size < encoder.downsampling:
    raise ConfigError(
      f"config.{config.method}: parts of {part_size} px are below the ResNet's total stride {encoder.downsampling}"
    )
  view = augment.AugmentConfig(size=view_size, **config.augment)

  def make_inputs(batch, key):
    view_key, cut_key = jax.random.split(key)
    return cut(augment.single_view(batch, view_key, view), cut_key)

  return Method(
    model=PretextClassifier(encoder, num_classes, settings.hidden_dim),
    make_inputs=make_inputs,
    loss=pretext_loss,
    views_per_image=views_per_image,
    crops=(view,),
  )


def per_image(function: Callable) -> Callable:
  """`function(image, key)` applied to every image of a batch with its own key."""

  def batched(images, key):
    return jax.vmap(function)(images, jax.random.split(key, images.shape[0]))

  return functools.wraps(function)(batched)
