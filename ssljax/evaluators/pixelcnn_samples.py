"""Samples of an autoregressive image model (PixelCNN), drawn sub-pixel by sub-pixel, as a PNG grid in the workdir
(and TensorBoard): one row per class for a class-conditional model, else `num_images` samples; a super-resolution
model samples from the first test images' low-resolution copies, shown as (low resolution | sample | original).
A conditional model draws num_images // num_classes per class, at least one. With labelled data, how recognisable
`num_scored` more samples are (`sample_classes`; a conditional model's classes in turn; not for super-resolution,
whose samples follow their test images)."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, paths
from ssljax.config import ConfigError
from ssljax.evaluators.reconstruction import tile
from ssljax.evaluators.sample_classes import sample_classes
from ssljax.methods.pixelcnn import low_res_of, quantize
from ssljax.models.pixelcnn import LEVELS, sample


def run(context, num_images: int = 16, num_scored: int = 1000, temperature: float = 1.0, seed: int = 0) -> dict:
  """{"pixelcnn_samples/ssl/mean_value"} (the samples' mean pixel in [0, 1]: a quick check that sampling is not stuck
  at 0 or 255) and the classifier's statistics; writes WORKDIR/pixelcnn_samples.png."""
  config = context.config
  if config.method != "pixelcnn":
    raise ConfigError(f"config.evals: pixelcnn_samples needs method 'pixelcnn', not {config.method!r}")
  num_classes = context.train_source.num_classes if config.pixelcnn.conditional else 0
  per_row = max(1, num_images // max(num_classes, 1)) if num_classes else num_images
  labels = jnp.repeat(jnp.arange(num_classes), per_row) if num_classes else jnp.zeros(num_images, jnp.int32)
  size, channels, factor = config.dataset.image_size, config.dataset.channels, config.pixelcnn.super_resolution
  originals = low_res = None
  if factor:  # Conditioned on test images (and their labels).
    test = data.read_examples(context.test_source, np.arange(min(len(labels), len(context.test_source))))
    originals, labels = quantize(jnp.asarray(test["image"])), jnp.asarray(test["label"])
    low_res = low_res_of(originals, factor)

  @jax.jit
  def draw(variables, key, labels, low_res):
    logits = lambda images: context.model.apply(variables, images, labels, low_res, method="pixel_logits")  # noqa: E731
    return np.float32(1 / (LEVELS - 1)) * sample(logits, (labels.shape[0], size, size, channels), key, temperature)

  images = np.asarray(draw(context.variables, jax.random.key(seed), labels, low_res), np.float32)
  if factor:
    blocks = np.repeat(np.repeat(np.asarray(low_res), factor, 1), factor, 2)
    grid = tile(np.concatenate([blocks, images, np.asarray(originals) / (LEVELS - 1)], axis=2))
  else:
    grid = tile(images, columns=per_row if num_classes else 4)
  zoom = max(1, 48 // size)
  grid = grid.repeat(zoom, 0).repeat(zoom, 1)
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / "pixelcnn_samples.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, "pixelcnn_samples", grid)
  results = {"pixelcnn_samples/ssl/mean_value": float(images.mean())}
  if factor:
    return results
  scored_labels = jnp.arange(num_scored) % max(num_classes, 1)
  scored = draw(context.variables, jax.random.fold_in(jax.random.key(seed), 1), scored_labels, None)
  return results | sample_classes(context, "pixelcnn_samples", np.asarray(scored, np.float32))
