"""Datasets and the step-indexed sampler: fixed splits, per-epoch permutations, process slices, tfds mock data."""

import multiprocessing
import re
import time

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


def test_sample_photos_hold_out_the_right_edge_of_both_photos():
  from sklearn.datasets import load_sample_images

  photos = load_sample_images().images
  train, test = (data.load_source(_dataset("sample_photos", 64, channels=3), split) for split in ("train", "test"))
  assert (len(train), len(test)) == (1242, 322) and train.num_classes == test.num_classes == 2
  np.testing.assert_array_equal(np.bincount(test.labels), [161, 161])
  np.testing.assert_array_equal(train.images[0], photos[0][:64, :64] / np.float32(255))  # Stored size: as is.
  np.testing.assert_array_equal(test.images[-1], photos[1][-64 - 11 : -11, -64:] / np.float32(255))
  # A training crop reaches column 479 at most, the test crops start at column 480: no pixel is shared.
  lefts = np.arange(0, 640 - 160 - 64 + 1, 16)
  assert lefts[-1] + 64 <= 480
  small = data.load_source(_dataset("sample_photos", 32, channels=3), "test")
  assert small.images.shape == (322, 32, 32, 3)
  np.testing.assert_allclose(small.images.mean(), test.images.mean(), atol=1e-3)  # Antialiased: the mean is kept.


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


def _bordered_image(height=24, width=48):
  """uint8 [H, W, 3]: a red centre square with blue bands left and right (what a centre crop cuts away)."""
  image = np.zeros((height, width, 3), np.uint8)
  image[..., 2] = 255
  side = (width - height) // 2
  image[:, side : side + height] = (255, 0, 0)
  return image


@pytest.fixture
def bordered_folder(tmp_path):
  from PIL import Image

  (tmp_path / "train").mkdir()
  for index in range(4):
    Image.fromarray(_bordered_image()).save(tmp_path / "train" / f"{index}.png")
  return data.FolderSource(str(tmp_path), "train", size=8, channels=3)


def test_host_crops_are_cut_from_the_full_image(bordered_folder):
  """A centre-cropped square never shows the blue bands; crops sampled on the full image do, with the crop-box
  distribution of `augment.crop_box` and a key per (step, example) whatever the other examples of the batch."""
  from ssljax.augment import AugmentConfig

  assert bordered_folder.get(np.arange(4))["image"][..., 2].max() < 0.1  # The centre square (and filter spill).
  views = (AugmentConfig(size=8), AugmentConfig(size=6, crop_scale=(0.05, 0.4)))
  crops = data.HostCrops(bordered_folder, views, seed=0, channels=3)
  batches = [crops.get_for_step(np.arange(4), step) for step in range(10)]
  assert [c.shape for c in batches[0]["crops"]] == [(4, 8, 8, 3), (4, 6, 6, 3)]
  assert batches[0]["crops"][0].dtype == np.uint8  # Converted on the device (augment.augment_view).
  blue = np.concatenate([(b["crops"][0][..., 2] > 128).any(axis=(1, 2)) for b in batches])
  assert 0.2 < blue.mean() < 1.0  # Most boxes of area >= 8% of 24 x 48 reach a band; some stay inside the centre.
  boxes = np.concatenate([crops.boxes(step, np.arange(4), [24] * 4, [48] * 4) for step in range(50)])
  top, left, height, width = np.moveaxis(boxes, -1, 0)
  assert (top >= 0).all() and (left >= 0).all() and (top + height <= 24).all() and (left + width <= 48).all()
  area = height * width / (24 * 48)
  assert 0.07 < area[:, 0].min() and area[:, 0].max() <= 1.0 and area[:, 1].max() < 0.42
  np.testing.assert_array_equal(crops.boxes(3, [2], [24], [48])[0], crops.boxes(3, [0, 2], [24] * 2, [48] * 2)[1])
  assert not np.array_equal(crops.boxes(3, [2], [24], [48]), crops.boxes(4, [2], [24], [48]))
  again = data.HostCrops(bordered_folder, views, seed=0, channels=3).get_for_step(np.arange(4), 7)
  np.testing.assert_array_equal(again["crops"][1], batches[7]["crops"][1])


def test_loader_threads_chunks_and_worker_processes_give_the_same_batches(tmp_path, monkeypatch):
  """grain's loader (`data.load_batches`): host crops of a folder of JPEGs read in chunks of 3 examples (a step of 4
  in two chunks) are the batches `get_for_step` cuts whole, in step order, with the same crops read one chunk at a
  time, in two spawned worker processes, and after a resume; a worker reads the share of the process that started
  it (here process 1 of 2, which the workers, running no jax.distributed, could not know); the workers stop when
  the consumer does; a truncated JPEG read in a worker process is the same one-line error naming the file."""
  from PIL import Image

  from ssljax.augment import AugmentConfig

  rng = np.random.default_rng(0)
  (tmp_path / "train").mkdir()
  for index in range(12):
    pixels = rng.integers(0, 256, (20 + index, 30, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "train" / f"{index}.jpg", quality=90)
  views = (AugmentConfig(size=8), AugmentConfig(size=6, crop_scale=(0.05, 0.4)))
  crops = data.HostCrops(data.FolderSource(str(tmp_path), "train", 8, 3), views, seed=0, channels=3)
  sampler = data.StepIndexedSampler(len(crops), 4, seed=0)
  monkeypatch.setattr(data, "LOADER_CHUNK", 3)

  def batches(start=0, **kwargs):
    return [(step, batch) for step, batch in data.train_batches(crops, sampler, None, start, 7, **kwargs)]

  def assert_batches(expected_indices, got):
    for step, batch in got:
      indices = expected_indices(step)
      np.testing.assert_array_equal(batch["index"], indices)
      for crop, whole in zip(batch["crops"], crops.get_for_step(indices, step)["crops"], strict=True):
        np.testing.assert_array_equal(crop, whole)

  several = batches()
  assert [step for step, _ in several] == list(range(7))
  assert len({batch["crops"][0].tobytes() for _, batch in several}) == 7  # Every step is cut anew.
  resumed = batches(start=4)
  assert [step for step, _ in resumed] == [4, 5, 6]
  in_workers = batches(worker_processes=2)
  monkeypatch.setattr(data, "LOADER_THREADS", 1)
  one_at_a_time = batches()
  for got in (several, resumed, in_workers, one_at_a_time):
    assert_batches(sampler.process_indices, got)
  monkeypatch.setattr(data, "this_process", lambda: (1, 2))
  second_process = batches(worker_processes=1)
  assert_batches(lambda step: sampler.global_indices(step)[2:], second_process)
  monkeypatch.setattr(data, "this_process", lambda: (0, 1))
  for _ in data.train_batches(crops, sampler, None, 0, 1000, worker_processes=2):
    break  # The training loop stops early (a NaN streak, a preemption): the worker processes stop with it.
  deadline = time.monotonic() + 60  # grain joins each worker for up to 25 s before it kills it.
  while multiprocessing.active_children() and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not multiprocessing.active_children()

  intact = (tmp_path / "train" / "5.jpg").read_bytes()
  (tmp_path / "train" / "5.jpg").write_bytes(intact[: len(intact) * 3 // 5])  # Its header intact, its data cut.
  truncated = data.HostCrops(data.FolderSource(str(tmp_path), "train", 8, 3), views, seed=0, channels=3)
  message = f"config.dataset: cannot read image {tmp_path / 'train' / '5.jpg'} "
  with pytest.raises(ConfigError, match=re.escape(message)) as raised:
    list(data.train_batches(truncated, data.StepIndexedSampler(12, 12, 0), None, 0, 1, worker_processes=1))
  assert "\n" not in str(raised.value)


@pytest.mark.parametrize("host_crops", [True, False])
def test_supervised_evaluators_cut_their_training_crops_as_pretraining_does(bordered_folder, monkeypatch, host_crops):
  """Fine-tuning, trained linear heads and self-training (`finetune.train_classifier`) read their labelled subset
  as pretraining reads its data: with dataset.host_crops, crops cut on the host from the subset's full images (the
  subset's example i is the folder's example indices[i]); without, the centre squares, cropped on the device."""
  from configs import simclr_digits
  from ssljax.evaluators import finetune

  config = simclr_digits.get_config("runlocal")
  config.dataset.update(name="folder", channels=3, image_size=8, host_crops=host_crops, host_resize="area")
  indices = np.array([3, 1, 2, 0, 3, 1, 2, 0])  # As many as the devices.
  subset = data.SubsetSource(bordered_folder, indices)
  read = []
  monkeypatch.setattr(data, "train_batches", lambda source, *args, **kwargs: read.append(source) or iter(()))
  settings = {**config.evals.finetune.to_dict(), "batch_size": 8}
  mesh = sharding.make_mesh((("data", jax.device_count()),))
  finetune.train_classifier(finetune.finetune_config(config, 8, settings), mesh, None, subset, seed=0)
  if not host_crops:
    assert read == [subset]
    return
  crops = read[0].get_for_step(np.arange(8), 5)["crops"][0]
  boxes = read[0].boxes(5, np.arange(8), [24] * 8, [48] * 8)[:, 0]
  for example, index in enumerate(indices):
    full = bordered_folder.encoded(index)[0]
    np.testing.assert_array_equal(crops[example], data.decode_crop_resize(full, boxes[example], 8, 3, "area"))


def test_evaluation_images_resize_to_size_over_the_crop_fraction_then_centre_crop():
  image = np.arange(16 * 32 * 3, dtype=np.uint8).reshape(16, 32, 3)
  # Shorter side 16 = 8 / 0.5 already: no resize, the centre 8 x 8 is cut.
  np.testing.assert_array_equal(data._resize_and_center_crop(image, 8, 0.5), image[4:12, 12:20])
  np.testing.assert_array_equal(data.preprocess([image], 8, center_crop=0.5)[0], np.float32(image[4:12, 12:20]) / 255)
  assert data._resize_and_center_crop(image, 14, 0.875).shape == (14, 14, 3)  # 16 px shorter side, 14 px crop.


def test_host_crops_need_full_size_images():
  from ssljax.augment import AugmentConfig

  with pytest.raises(ConfigError, match="config.dataset.host_crops: needs full-size images"):
    data.HostCrops(data.load_source(_dataset(), "test"), (AugmentConfig(size=8),), seed=0, channels=1)
