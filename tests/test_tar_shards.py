"""Image-text pairs from webdataset-style tar shards (`data.TarShardSource`), written by the tests: every pair read
back exactly, each process reading only its shards, step-indexed batches, and bad shards named or skipped."""

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from configs import clip_digits
from ssljax import data, experiment, text
from ssljax.config import ConfigError

SIDE = 8


def _pair(index: int):
  rng = np.random.default_rng(index)
  image = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
  return image, f"picture number {index}."


def write_shard(path, indices, drop_text=(), extension="png"):
  """A tar of KEY.png + KEY.txt for every index (KEY = 'sample/%06d'); `drop_text`: keys with no caption."""
  with tarfile.open(path, "w") as tar:
    for index in indices:
      image, caption = _pair(index)
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, format="PNG")
      files = {extension: buffer.getvalue()}
      if index not in drop_text:
        files["txt"] = caption.encode()
      for suffix, payload in files.items():
        info = tarfile.TarInfo(f"sample/{index:06d}.{suffix}")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def write_split(root, num_shards=4, per_shard=6):
  os.makedirs(root, exist_ok=True)
  for shard in range(num_shards):
    write_shard(os.path.join(root, f"{shard:05d}.tar"), range(shard * per_shard, (shard + 1) * per_shard))


def _index_of(caption: str) -> int:
  return int(caption.split()[-1].rstrip("."))


def test_every_pair_is_read_back_exactly(tmp_path):
  write_split(tmp_path / "train")
  source = data.TarShardSource(str(tmp_path / "train"), SIDE, 1)
  assert len(source) == 24 and source.incomplete == 0 and source.num_classes == 0
  batch = source.get(np.arange(24))
  for image, (caption,) in zip(batch["image"], batch["captions"], strict=True):
    expected_image, expected_caption = _pair(_index_of(caption))
    assert caption == expected_caption
    np.testing.assert_allclose(image[..., 0], expected_image / 255.0, atol=1e-6)
  assert sorted(_index_of(c) for (c,) in batch["captions"]) == list(range(24))


def test_each_process_reads_only_its_shards_and_draws_its_batches_from_them(tmp_path):
  write_split(tmp_path / "train")
  sources = [data.TarShardSource(str(tmp_path / "train"), SIDE, 1, process_index=p, process_count=2) for p in (0, 1)]
  assert [s.shards for s in sources] == [
    [str(tmp_path / "train" / f"{i:05d}.tar") for i in (0, 2)],
    [str(tmp_path / "train" / f"{i:05d}.tar") for i in (1, 3)],
  ]
  seen = [{_index_of(c) for (c,) in s.get(np.arange(len(s)))["captions"]} for s in sources]
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(24))
  assert all(s.total_examples == 24 for s in sources)
  samplers = [s.sampler(global_batch_size=8, seed=3) for s in sources]
  epoch = np.concatenate([samplers[0].process_indices(step) for step in range(3)])  # 12 pairs, 4 per step.
  assert sorted(epoch) == list(range(12))  # One pass over this process's pairs per epoch...
  np.testing.assert_array_equal(samplers[0].process_indices(1), sources[0].sampler(8, 3).process_indices(1))
  assert not np.array_equal(samplers[0].process_indices(3), samplers[0].process_indices(0))  # ...a new order next.
  assert not np.array_equal(samplers[0].process_indices(0), samplers[1].process_indices(0))


def test_a_truncated_or_foreign_shard_is_named_or_skipped_and_incomplete_pairs_are_counted(tmp_path):
  root = tmp_path / "train"
  write_split(root, num_shards=2)
  write_shard(root / "00002.tar", range(100, 103), drop_text=(101,))
  truncated = root / "00003.tar"
  write_shard(truncated, range(200, 206))
  truncated.write_bytes(truncated.read_bytes()[:3000])  # Cut inside the members.
  with pytest.raises(ConfigError, match=f"shard {truncated} is not a readable tar"):
    data.TarShardSource(str(root), SIDE, 1)
  source = data.TarShardSource(str(root), SIDE, 1, skip_bad_files=True)
  assert source.skipped_shards == [str(truncated)] and source.incomplete == 1 and len(source) == 12 + 2
  truncated.unlink()
  (root / "00004.tar").write_bytes(b"not a tar at all" * 100)
  with pytest.raises(ConfigError, match="00004.tar is not a readable tar"):
    data.TarShardSource(str(root), SIDE, 1)
  with pytest.raises(ConfigError, match="no .tar shards"):
    data.TarShardSource(str(tmp_path / "empty"), SIDE, 1)


def _tar_config(tmp_path):
  write_split(tmp_path / "train", num_shards=4, per_shard=8)
  write_split(tmp_path / "test", num_shards=1, per_shard=16)
  config = clip_digits.get_config("runlocal")
  config.dataset.update(name="tar", data_dir=str(tmp_path), captions="feature")
  config.text.context_length = 32
  return config


def test_tar_batches_carry_the_tokenised_caption_and_are_a_function_of_the_step(tmp_path):
  config = _tar_config(tmp_path)
  source = data.load_source(config.dataset, "train", config.text)
  sampler = data.train_sampler(source, 16, seed=0)
  first = source.get_for_step(sampler.process_indices(5), 5)
  again = data.load_source(config.dataset, "train", config.text)  # A fresh process after a resume.
  second = again.get_for_step(data.train_sampler(again, 16, seed=0).process_indices(5), 5)
  np.testing.assert_array_equal(first["text"], second["text"])
  np.testing.assert_array_equal(first["image"], second["image"])
  raw = source.source.get(sampler.process_indices(5))
  np.testing.assert_array_equal(first["text"], text.tokenize([c for (c,) in raw["captions"]], 32))


def test_clip_trains_on_tar_shards_and_reports_retrieval(tmp_path):
  config = _tar_config(tmp_path)
  config.batch_size, config.total_steps, config.eval_batch_size = 16, 4, 16
  config.eval_baselines = ()
  config.evals = {"zero_shot": config.evals.zero_shot}
  results = experiment.train_and_evaluate(config, str(tmp_path / "run"))
  assert "zero_shot/ssl/accuracy" not in results
  assert 0.0 <= results["retrieval/image_to_text/recall@1"] <= results["retrieval/image_to_text/recall@10"] <= 1.0
