"""Samples of a GAN's generator (DCGAN's figures) as a PNG grid in the workdir and TensorBoard: `num_images` images
from fixed noise (`seed`), the generator's BatchNorm on the samples' own statistics, as the PyTorch DCGAN example
draws them; with labelled data, how recognisable `num_scored` more samples are (`sample_classes`)."""

import jax
import numpy as np

from ssljax import paths
from ssljax.evaluators.reconstruction import tile
from ssljax.evaluators.sample_classes import sample_classes


def run(context, num_images: int = 64, num_scored: int = 1000, seed: int = 0) -> dict:
  """{"gan_samples/ssl/mean_value", "gan_samples/ssl/pixel_std_across_samples" (near 0 when the generator has
  collapsed to one image)}, and with labels the classifier's statistics for "ssl" and "real_test"; writes
  WORKDIR/gan_samples.png."""
  config = context.config

  @jax.jit
  def generate(variables, noise):
    images, _ = context.model.apply(variables, noise, method="generate", mutable=["batch_stats"])
    return images

  def samples(count, key):
    noise = jax.random.normal(key, (count, config.gan.latent_dim))
    return np.asarray(generate(context.variables, noise), np.float32)

  images = samples(num_images, jax.random.key(seed))
  grid = tile(images, columns=int(np.ceil(np.sqrt(num_images))))
  zoom = max(1, 48 // config.dataset.image_size)
  grid = grid.repeat(zoom, 0).repeat(zoom, 1)
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / "gan_samples.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, "gan_samples", grid)
  results = {
    "gan_samples/ssl/mean_value": float(images.mean()),
    "gan_samples/ssl/pixel_std_across_samples": float(images.std(axis=0).mean()),
  }
  scored = samples(num_scored, jax.random.fold_in(jax.random.key(seed), 1))
  return results | sample_classes(context, "gan_samples", scored)
