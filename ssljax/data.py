"""Datasets by name and a step-indexed, deterministic input pipeline.

A dataset is a random-access source (`len`, `get(indices)` -> {"image": float32 [B, H, W, C] in [0, 1],
"label": int32 [B]}). Two kinds:
- "digits": scikit-learn's bundled 8x8 handwritten digits (real data, no download) with a fixed held-out split;
- any other name: `tfds.data_source(name)` (ArrayRecord, random access, no TensorFlow at run time).

The batch of step s is a pure function of (seed, s): epoch e = s // steps_per_epoch reads a permutation drawn
from (seed, e). Resuming at step s therefore replays exactly the batches of an uninterrupted run, with no
iterator state to checkpoint. Each process reads only its own contiguous slice of every global batch.
"""

import concurrent.futures
import dataclasses
import queue
import threading

import jax
import numpy as np

from ssljax.config import ConfigError

DIGITS_TEST_SIZE = 360  # 20% of the 1797 digits, held out with a fixed permutation.


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """An in-memory dataset: images float32 [N, H, W, C] in [0, 1], labels int32 [N]."""

  images: np.ndarray
  labels: np.ndarray
  num_classes: int

  def __len__(self):
    return len(self.images)

  def get(self, indices):
    return {"image": self.images[indices], "label": self.labels[indices]}


class TfdsSource:
  """A tfds ArrayRecord split read by index; images are resized (shorter side) and centre-cropped to `size`."""

  def __init__(self, name: str, split: str, size: int, data_dir: str | None):
    import tensorflow_datasets as tfds  # Imported here: only tfds datasets need it.

    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      raise ConfigError(f"config.dataset.name: unknown dataset {name!r} (not 'digits' and not in tfds)") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
      raise ConfigError(
        f"config.dataset.name: {name!r} has no 'image' and 'label' features (it has {sorted(features)})"
      )
    self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    self.num_classes = features["label"].num_classes
    self._size = size
    self._pool = concurrent.futures.ThreadPoolExecutor(8)

  def __len__(self):
    return len(self._source)

  def _image(self, record):
    image = np.asarray(record["image"])
    if image.shape[0] != self._size or image.shape[1] != self._size:
      image = _resize_and_center_crop(image, self._size)
    return image

  def get(self, indices):
    records = list(self._pool.map(self._source.__getitem__, [int(i) for i in indices]))
    images = np.stack([self._image(r) for r in records]).astype(np.float32) / 255.0
    return {"image": images, "label": np.array([r["label"] for r in records], np.int32)}


def _resize_and_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, C] -> [size, size, C]: bicubic resize of the shorter side to `size`, then a centre crop."""
  from PIL import Image

  height, width = image.shape[:2]
  scale = size / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  squeeze = image.shape[2] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image).resize((new_w, new_h), Image.BICUBIC)
  out = np.asarray(pil)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  out = out[top : top + size, left : left + size]
  return out[..., None] if squeeze else out


@dataclasses.dataclass(frozen=True)
class SubsetSource:
  """The examples `indices` of `source` (e.g. a labelled subset for fine-tuning), as a source of its own."""

  source: object
  indices: np.ndarray

  @property
  def num_classes(self) -> int:
    return self.source.num_classes

  def __len__(self):
    return len(self.indices)

  def get(self, indices):
    return self.source.get(self.indices[indices])


def _digits(split: str, size: int) -> ArraySource:
  from sklearn.datasets import load_digits

  digits = load_digits()
  order = np.random.default_rng(0).permutation(len(digits.target))
  test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
  index = {"train": train, "test": test}.get(split)
  if index is None:
    raise ConfigError(f"config.dataset: digits has splits 'train' and 'test', not {split!r}")
  images = digits.images[index].astype(np.float32)[..., None] / 16.0
  if size != images.shape[1]:
    images = np.asarray(jax.image.resize(images, (len(images), size, size, 1), "linear"))
  return ArraySource(np.clip(images, 0.0, 1.0), digits.target[index].astype(np.int32), 10)


def load_source(dataset_config, split: str):
  """The split `split` of `config.dataset` (name, image_size, optional data_dir) as a random-access source."""
  size = dataset_config.image_size
  if not isinstance(size, int) or size <= 0:
    raise ConfigError(f"config.dataset.image_size: must be a positive integer, got {size!r}")
  if dataset_config.name == "digits":
    source = _digits(split, size)
  else:
    source = TfdsSource(dataset_config.name, split, size, dataset_config.get("data_dir"))
  check_source(source, dataset_config, split)
  return source


def check_source(source, dataset_config, split: str):
  """One-line ConfigErrors for a split that is empty or whose examples do not match the config."""
  name = f"{dataset_config.name!r} split {split!r}"
  if len(source) == 0:
    raise ConfigError(f"config.dataset: {name} is empty")
  example = source.get(np.arange(1))
  image, label = example["image"], example["label"]
  height, width, channels = image.shape[1:] if image.ndim == 4 else (None, None, None)
  if channels != dataset_config.channels:
    raise ConfigError(
      f"config.dataset.channels: {dataset_config.channels}, but {name} images have shape {image.shape[1:]}"
    )
  if (height, width) != (dataset_config.image_size,) * 2:
    raise ConfigError(
      f"config.dataset.image_size: {dataset_config.image_size}, but {name} images have shape {image.shape[1:]}"
    )
  if image.dtype != np.float32 or not np.issubdtype(label.dtype, np.integer):
    raise ConfigError(f"config.dataset: {name} gives {image.dtype} images and {label.dtype} labels, not float32/int")


@dataclasses.dataclass(frozen=True)
class StepIndexedSampler:
  """Which examples make up the global batch of each step: a pure function of (seed, step)."""

  num_examples: int
  global_batch_size: int
  seed: int

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.global_batch_size

  def global_indices(self, step: int) -> np.ndarray:
    if self.steps_per_epoch == 0:
      raise ConfigError(
        f"config.batch_size: {self.global_batch_size} is larger than the dataset ({self.num_examples} examples)"
      )
    epoch, position = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
    return order[position * self.global_batch_size : (position + 1) * self.global_batch_size]

  def process_indices(self, step: int) -> np.ndarray:
    """This process's contiguous slice of the global batch of `step`."""
    per_process = self.global_batch_size // jax.process_count()
    start = jax.process_index() * per_process
    return self.global_indices(step)[start : start + per_process]


def global_batch(local_batch: dict, sharding) -> dict:
  """Assemble each process's numpy slice into one global jax.Array sharded by `sharding`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def train_batches(source, sampler: StepIndexedSampler, sharding, start_step: int, num_steps: int, prefetch: int = 2):
  """Yields (step, global batch) for steps [start_step, num_steps), read ahead on a background thread."""
  slots: queue.Queue = queue.Queue(maxsize=prefetch)
  stop = threading.Event()

  def produce():
    try:
      for step in range(start_step, num_steps):
        batch = global_batch(source.get(sampler.process_indices(step)), sharding)
        while not stop.is_set():
          try:
            slots.put((step, batch), timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
    except Exception as error:  # Surfaced in the consumer, not lost in the thread.
      slots.put(error)
    slots.put(None)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while (item := slots.get()) is not None:
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()


def eval_batches(source, batch_size: int, sharding):
  """Yields (global batch, number of real examples) covering `source` once in order; the last batch is padded
  by repeating example 0 so every batch has the same shape (one compilation)."""
  num = len(source)
  per_process = batch_size // jax.process_count()
  for start in range(0, num, batch_size):
    indices = np.arange(start, start + batch_size)
    valid = int(min(batch_size, num - start))
    indices = np.where(indices < num, indices, 0)
    local = indices[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
    yield global_batch(source.get(local), sharding), valid
