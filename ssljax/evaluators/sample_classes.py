"""A number for "recognisable" beside a generative model's pictures (GAN, VAE and PixelCNN samples): a softmax
classifier on the raw pixels of up to `MAX_EXAMPLES` training images (the data's own classes) reads the samples and
as many test images. "classifier_confidence" is its mean top probability (samples that look like no class score
low); "classes_covered" the exponential of the entropy of its predicted classes (the number of classes the images
spread over evenly: 1 when a generator collapsed onto one class, 10 for ten classes in equal shares). The test
images' values are the reference; both numbers are needed (an untrained generator's one grey image is
"confidently" one class)."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data
from ssljax.evaluators.linear_probe import fit_softmax_classifiers

MAX_EXAMPLES = 10_000
WEIGHT_DECAY = 1e-4
STEPS = 500


def class_statistics(probabilities: np.ndarray) -> dict:
  """{"classifier_confidence": mean top probability, "classes_covered": exp(entropy of the argmax histogram)} of a
  classifier's probabilities [N, C]."""
  counts = np.bincount(probabilities.argmax(-1), minlength=probabilities.shape[-1])
  shares = counts[counts > 0] / counts.sum()
  return {
    "classifier_confidence": float(probabilities.max(-1).mean()),
    "classes_covered": float(np.exp(-np.sum(shares * np.log(shares)))),
  }


def _flat(images) -> jax.Array:
  return jnp.asarray(images, jnp.float32).reshape(len(images), -1)


def pixel_classifier(source):
  """A softmax classifier fitted to the raw pixels of `source`'s first `MAX_EXAMPLES` images and their labels:
  images [N, H, W, C] in [0, 1] -> class probabilities [N, classes] (numpy)."""
  train = data.read_examples(source, np.arange(min(len(source), MAX_EXAMPLES)))
  kernels, biases = fit_softmax_classifiers(
    _flat(train["image"]),
    jnp.asarray(train["label"], jnp.int32),
    jnp.array([WEIGHT_DECAY]),
    num_classes=source.num_classes,
    steps=STEPS,
    batch_size=len(train["label"]),
  )
  return lambda images: np.asarray(jax.nn.softmax(_flat(images) @ kernels[0] + biases[0]))


def sample_classes(context, evaluator: str, samples: np.ndarray) -> dict:
  """{"<evaluator>/ssl/<statistic>"} of `samples` [N, H, W, C] in [0, 1] and {"<evaluator>/real_test/<statistic>"}
  of the first N test images (`class_statistics`); {} for unlabelled data."""
  if not context.train_source.num_classes:
    return {}
  classify = pixel_classifier(context.train_source)
  test = data.read_examples(context.test_source, np.arange(min(len(context.test_source), len(samples))))["image"]
  results = {}
  for name, images in (("ssl", samples), ("real_test", test)):
    results |= {f"{evaluator}/{name}/{k}": v for k, v in class_statistics(classify(images)).items()}
  return results
