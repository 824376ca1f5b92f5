"""Datasets and the step-indexed sampler: fixed splits, per-epoch permutations, process slices, tfds mock data."""

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ssljax import data, sharding
from ssljax.config import ConfigError


def _dataset(name="digits", size=8, channels=1):
  return ml_collections.ConfigDict(dict(name=name, image_size=size, channels=channels, data_dir=None))


def test_digits_split_is_fixed_disjoint_and_real():
  train, test = data.load_source(_dataset(), "train"), data.load_source(_dataset(), "test")
  assert (len(train), len(test)) == (1437, 360)
  train_rows = {row.tobytes() for row in train.images}
  assert sum(row.tobytes() in train_rows for row in test.images) < 5  # Digits holds a few exact duplicates.
  np.testing.assert_array_equal(data.load_source(_dataset(), "test").labels, test.labels)
  assert test.images.shape == (360, 8, 8, 1) and 0.0 <= test.images.min() and test.images.max() == 1.0
  assert np.bincount(test.labels).min() >= 25  # All ten classes are in the held-out split.
  upsampled = data.load_source(_dataset(size=16), "test")
  assert upsampled.images.shape == (360, 16, 16, 1)


def test_sampler_is_a_permutation_per_epoch_and_a_pure_function_of_the_step():
  sampler = data.StepIndexedSampler(num_examples=100, global_batch_size=32, seed=3)
  assert sampler.steps_per_epoch == 3
  epoch0 = np.concatenate([sampler.global_indices(s) for s in range(3)])
  epoch1 = np.concatenate([sampler.global_indices(s) for s in range(3, 6)])
  assert len(set(epoch0)) == 96 and len(set(epoch1)) == 96
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(sampler.global_indices(4), data.StepIndexedSampler(100, 32, 3).global_indices(4))
  assert not np.array_equal(sampler.global_indices(4), data.StepIndexedSampler(100, 32, 4).global_indices(4))


def test_batch_larger_than_dataset_is_a_named_error():
  with pytest.raises(ConfigError, match="config.batch_size: 512 is larger than the dataset"):
    data.StepIndexedSampler(100, 512, 0).global_indices(0)


def test_train_batches_resume_replays_the_same_batches(mesh8):
  source = data.load_source(_dataset(), "train")
  sampler = data.StepIndexedSampler(len(source), 64, seed=0)
  shard = sharding.batch_sharding(mesh8)
  full = [np.asarray(b["image"]) for _, b in data.train_batches(source, sampler, shard, 0, 30)]
  resumed = [(s, np.asarray(b["image"])) for s, b in data.train_batches(source, sampler, shard, 17, 30)]
  assert [s for s, _ in resumed] == list(range(17, 30))
  for step, images in resumed:
    np.testing.assert_array_equal(images, full[step])


def test_eval_batches_cover_the_split_once_in_order(mesh8):
  source = data.load_source(_dataset(), "test")
  seen = []
  for batch, valid in data.eval_batches(source, 96, sharding.batch_sharding(mesh8)):
    assert batch["label"].shape == (96,)
    seen.append(np.asarray(batch["label"])[:valid])
  np.testing.assert_array_equal(np.concatenate(seen), source.labels)


def test_tfds_source_reads_mock_data_without_tensorflow_and_resizes():
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    source = data.load_source(_dataset("cifar10", 16, channels=3), "train")
    batch = source.get(np.array([0, 5, 19]))
  assert len(source) == 20 and source.num_classes == 10
  assert batch["image"].shape == (3, 16, 16, 3) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0 and batch["label"].dtype == np.int32


def test_unknown_dataset_is_a_named_error():
  with pytest.raises(ConfigError, match="config.dataset.name: unknown dataset 'no_such_dataset'"):
    data.load_source(_dataset("no_such_dataset"), "train")


def test_process_slices_partition_the_global_batch(monkeypatch):
  sampler = data.StepIndexedSampler(1000, 64, seed=1)
  monkeypatch.setattr(jax, "process_count", lambda: 4)
  parts = []
  for index in range(4):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    parts.append(sampler.process_indices(7))
  np.testing.assert_array_equal(np.concatenate(parts), sampler.global_indices(7))
