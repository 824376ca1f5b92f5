"""Samples of a GAN's generator (DCGAN's figures) as a PNG grid in the workdir and TensorBoard: `num_images` images
from fixed noise (`seed`), the generator's BatchNorm on the samples' own statistics, as the PyTorch DCGAN example
draws them.

With labelled data, a number for "recognisable" beside the picture: a softmax classifier on the raw pixels of up
to `MAX_CLASSIFIER_EXAMPLES` training images (the data's own classes) reads `num_scored` samples and as many test
images. "classifier_confidence" is its mean top probability (samples that look like no class score low) and
"classes_covered" the exponential of the entropy of its predicted classes (the number of classes the images
spread over evenly: 1 when a generator collapsed onto one class). The test images' values are the reference."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import paths
from ssljax.evaluators.linear_probe import fit_softmax_classifiers
from ssljax.evaluators.reconstruction import tile

MAX_CLASSIFIER_EXAMPLES = 10_000
CLASSIFIER_WEIGHT_DECAY = 1e-4


def class_statistics(probabilities: np.ndarray) -> dict:
  """{"classifier_confidence": mean top probability, "classes_covered": exp(entropy of the argmax histogram)} of a
  classifier's probabilities [N, C]."""
  counts = np.bincount(probabilities.argmax(-1), minlength=probabilities.shape[-1])
  shares = counts[counts > 0] / counts.sum()
  return {
    "classifier_confidence": float(probabilities.max(-1).mean()),
    "classes_covered": float(np.exp(-np.sum(shares * np.log(shares)))),
  }


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
  num_classes = context.train_source.num_classes
  if not num_classes:
    return results
  train = context.train_source.get(np.arange(min(len(context.train_source), MAX_CLASSIFIER_EXAMPLES)))
  flat = lambda x: jnp.asarray(x, jnp.float32).reshape(len(x), -1)  # noqa: E731
  kernels, biases = fit_softmax_classifiers(
    flat(train["image"]),
    jnp.asarray(train["label"], jnp.int32),
    jnp.array([CLASSIFIER_WEIGHT_DECAY]),
    num_classes=num_classes,
    steps=500,
    batch_size=len(train["label"]),
  )
  test = context.test_source.get(np.arange(min(len(context.test_source), num_scored)))
  scored = {"ssl": samples(num_scored, jax.random.fold_in(jax.random.key(seed), 1)), "real_test": test["image"]}
  for name, x in scored.items():
    probabilities = np.asarray(jax.nn.softmax(flat(x) @ kernels[0] + biases[0]))
    results |= {f"gan_samples/{name}/{k}": v for k, v in class_statistics(probabilities).items()}
  return results
