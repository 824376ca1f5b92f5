"""A real tfds dataset, built offline with tfds's own builder code (`tests/tiny_tfds.py`) by `ssljax.prepare`,
read by a training run found through $TFDS_DATA_DIR; the run's config.json records where the data was."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import simclr_digits
from ssljax import data, experiment, prepare
from ssljax.config import ConfigError
from tests import tiny_tfds


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  assert prepare.prepare(tiny_tfds.NAME, str(data_dir)) == str(data_dir)
  return data_dir


def test_prepare_writes_array_record_that_the_source_reads(tiny_data_dir, capsys):
  files = sorted(p.name for p in (tiny_data_dir / tiny_tfds.NAME / "1.0.0").iterdir())
  assert [f for f in files if "array_record" in f] == [
    f"{tiny_tfds.NAME}-test.array_record-00000-of-00001",
    f"{tiny_tfds.NAME}-train.array_record-00000-of-00001",
  ]
  config = simclr_digits.get_config().dataset
  config.update(name=tiny_tfds.NAME, data_dir=str(tiny_data_dir), image_size=tiny_tfds.SIDE)
  source = data.load_source(config, "test")
  assert len(source) == 20 and source.num_classes == 10 and source.data_dir == str(tiny_data_dir)
  batch = source.get(np.arange(20))  # tfds stores examples in the order of their keys' hashes.
  np.testing.assert_array_equal(np.bincount(batch["label"]), [2] * 10)
  low = 20 * batch["label"][:, None, None]
  interior = np.round(batch["image"][:, 1:-1, 1:-1, 0] * 255)
  assert np.all((interior >= low) & (interior < low + 20))  # Each image is its label's.
  assert np.all(batch["image"][:, 0] == np.float32(250 / 255))  # The border, untouched at the stored size.
  prepare.main([tiny_tfds.NAME, "--data_dir", str(tiny_data_dir)])  # Prepared already: reused, not rebuilt.
  assert capsys.readouterr().out.strip().endswith(f"--config.dataset.data_dir={tiny_data_dir}")
  with pytest.raises(SystemExit) as exit_:
    prepare.main(["no_such_dataset_anywhere"])
  assert exit_.value.code == 2
  assert (
    capsys.readouterr().err
    == "error: NAME: 'no_such_dataset_anywhere' is not a tfds dataset (see tfds.list_builders())\n"
  )


def test_host_crops_read_the_full_stored_images(tiny_data_dir):
  from ssljax.augment import AugmentConfig

  config = simclr_digits.get_config().dataset
  config.update(name=tiny_tfds.NAME, data_dir=str(tiny_data_dir), image_size=6)
  source = data.load_source(config, "train")
  image, label = source.encoded(3)
  assert image.shape == (tiny_tfds.SIDE, tiny_tfds.SIDE, 1) and label == source.get(np.array([3]))["label"][0]
  # Two views of two sizes, both resizes, cut whole and by the loader in chunks: every crop in its place.
  views, indices = (AugmentConfig(size=6), AugmentConfig(size=4, crop_scale=(0.1, 0.5))), np.arange(40)[::-1]
  for resize in data.HOST_RESIZES:
    crops = data.HostCrops(source, views, seed=0, channels=1, resize=resize)
    batch = crops.get_for_step(indices, step=2)
    boxes = crops.boxes(2, indices, [tiny_tfds.SIDE] * 40, [tiny_tfds.SIDE] * 40)
    for view, size in enumerate((6, 4)):
      for example, index in enumerate(indices):
        expected = data.decode_crop_resize(source.encoded(index)[0], boxes[example, view], size, 1, resize)
        np.testing.assert_array_equal(batch["crops"][view][example], expected)
    np.testing.assert_array_equal(batch["label"], source.get(indices)["label"])
    sampler = data.StepIndexedSampler(len(source), 40, seed=0)
    [(_, loaded)] = data.train_batches(crops, sampler, None, 2, 3)  # Chunks of 32 and 8 in grain's threads.
    whole = crops.get_for_step(sampler.process_indices(2), step=2)
    for view in range(2):
      np.testing.assert_array_equal(loaded["crops"][view], whole["crops"][view])


def test_a_run_found_through_the_environment_records_its_data_dir(tiny_data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tiny_data_dir))
  monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tiny_data_dir))  # tfds reads the variable at import.
  config = simclr_digits.get_config("runlocal,train_only")
  config.dataset.name = tiny_tfds.NAME
  config.total_steps = 2
  experiment.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["dataset"]["data_dir"] == str(tiny_data_dir)  # Not null: the run can be re-evaluated alone.
  monkeypatch.undo()
  reloaded = experiment.load_config(str(tmp_path))
  assert len(data.load_source(reloaded.dataset, reloaded.dataset.train_split)) == 64


def test_prepare_without_network_fails_fast_and_leaves_nothing(tmp_path, monkeypatch):
  """Offline, tfds's own downloader (here fetching a URL the tiny builder names) gives up after our few retries,
  not tfds's ten, and the data dir holds afterwards exactly what it held before."""
  import socket

  import urllib3

  lookups = []

  def offline(host, *args, **kwargs):
    lookups.append(host)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

  def split_generators(self, dl_manager):
    dl_manager.download("https://ssljax-offline.invalid/images.tar")

  monkeypatch.setattr(socket, "getaddrinfo", offline)
  monkeypatch.setattr(urllib3.util.retry.Retry, "sleep", lambda self, response=None: None)  # No backoff waits.
  monkeypatch.setattr(tiny_tfds.SsljaxTinyImages, "_split_generators", split_generators)
  (tmp_path / "theirs.txt").write_text("kept")
  with pytest.raises(ConfigError, match=r"^NAME: downloading 'ssljax_tiny_images' failed \(ConnectionError: "):
    prepare.prepare(tiny_tfds.NAME, str(tmp_path))
  assert lookups.count("ssljax-offline.invalid") == prepare.DOWNLOAD_RETRIES + 1
  assert sorted(p.name for p in tmp_path.rglob("*")) == ["theirs.txt"]
