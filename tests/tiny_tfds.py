"""A tiny image-classification dataset built with tfds's own builder code, for tests that need a really prepared
tfds dataset: no network, and no TensorFlow (its images are uint8 tensor features, which tfds writes without it).
Its border pixels have their own value (250), unlike the interior, so crops that keep or lose them can be told."""

import atexit
import functools
import shutil
import tempfile

import numpy as np
import tensorflow_datasets as tfds

NAME = "ssljax_tiny_images"
SIDE = 12
SPLITS = {"train": 64, "test": 20}
NUM_CLASSES = 10  # As digits: a run on it compiles the same step as the digits smoke runs.


class SsljaxTinyImages(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  SHAPE = (SIDE, SIDE, 1)

  def _info(self):
    features = {
      "image": tfds.features.Tensor(shape=self.SHAPE, dtype=np.uint8),
      "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
    }
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(count, seed) for seed, (split, count) in enumerate(SPLITS.items())}

  def _generate_examples(self, count: int, seed: int):
    rng = np.random.default_rng(seed)
    for index in range(count):
      label = index % NUM_CLASSES
      image = np.full((SIDE, SIDE, 1), 250, np.uint8)
      image[1:-1, 1:-1] = rng.integers(0, 20, (SIDE - 2, SIDE - 2, 1)) + 20 * label
      yield index, {"image": image, "label": label}


CAPTIONS_NAME = "ssljax_tiny_captions"
CAPTIONS_PER_IMAGE = 3


class SsljaxTinyCaptions(SsljaxTinyImages):
  """The same images, unlabelled, each with `CAPTIONS_PER_IMAGE` captions ("image 7, caption 2"), as
  coco_captions stores them: a sequence of {"text"} under "captions"."""

  def _info(self):
    features = {
      "image": tfds.features.Tensor(shape=(SIDE, SIDE, 1), dtype=np.uint8),
      "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
    }
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _generate_examples(self, count: int, seed: int):
    for index, example in super()._generate_examples(count, seed):
      texts = [f"image {index}, caption {c}" for c in range(CAPTIONS_PER_IMAGE)]
      yield index, {"image": example["image"], "captions": {"text": texts}}


TEXT_NAME = "ssljax_tiny_text"


class SsljaxTinyText(tfds.core.GeneratorBasedBuilder):
  """Unlabelled documents ("document 7 says: the number seven and some words"), as lm1b stores its sentences: one
  string feature "text"."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(count, seed) for seed, (split, count) in enumerate(SPLITS.items())}

  def _generate_examples(self, count: int, seed: int):
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for index in range(count):
      yield index, {"text": f"document {index} says: the number {words[index % 10]} and some words{'!' * seed}"}


COLOURS_NAME = "ssljax_tiny_colours"
COLOURS_SIDE = 16


def colour_of_lightness(t: np.ndarray) -> np.ndarray:
  """[...] in [0, 1] -> RGB [..., 3]: dark blue at 0 to bright orange at 1, so each pixel's colour follows from its
  lightness (what a colorizer can learn from L alone)."""
  dark, bright = np.array([0.05, 0.1, 0.5]), np.array([1.0, 0.7, 0.2])
  return dark + t[..., None] * (bright - dark)


class SsljaxTinyColours(SsljaxTinyImages):
  """Colour images of smooth random blobs (a 4 x 4 grid of random levels, upsampled bilinearly), coloured by
  `colour_of_lightness`; labels by index, as digits' 10 classes."""

  SHAPE = (COLOURS_SIDE, COLOURS_SIDE, 3)

  def _generate_examples(self, count: int, seed: int):
    rng = np.random.default_rng(seed)
    position = (np.arange(COLOURS_SIDE) + 0.5) * 4 / COLOURS_SIDE - 0.5  # Pixel centres on the 4 x 4 grid.
    upsample = np.stack([np.interp(position, np.arange(4), unit) for unit in np.eye(4)], -1)  # [S, 4], linear.
    for index in range(count):
      field = upsample @ rng.uniform(0, 1, (4, 4)) @ upsample.T
      image = np.round(colour_of_lightness(field) * 255).astype(np.uint8)
      yield index, {"image": image, "label": index % NUM_CLASSES}


@functools.cache
def prepared_colours() -> str:
  """A data dir holding `COLOURS_NAME`, prepared once per process by ssljax.prepare and removed at its exit."""
  from ssljax import prepare

  directory = tempfile.mkdtemp(prefix="ssljax_colours_")
  atexit.register(shutil.rmtree, directory, True)
  prepare.prepare(COLOURS_NAME, directory)
  return directory
