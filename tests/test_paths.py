"""Workdirs in a bucket: every file of a run goes through etils.epath (`ssljax.paths`). The test runs with a fake
gs:// bucket, epath's own mock redirecting it to a local directory (and orbax's TensorStore writes pointed there
too); a file written with plain `open` / `os` calls would land in the working directory as "gs:/..." (asserted
empty) or fail."""

import contextlib
import json
import os
import re
import sys
from unittest import mock

import numpy as np
import pytest
from etils.epath import gpath, testing
from orbax.checkpoint._src.path import gcs_utils
from orbax.checkpoint._src.serialization import tensorstore_utils

from configs import simclr_digits
from ssljax import embed, experiment, paths
from ssljax.config import ConfigError


@contextlib.contextmanager
def fake_bucket(root):
  """gs://NAME/... is read and written at ROOT/NAME/... through epath and orbax (TensorStore's file driver instead
  of its GCS one; no bucket settings to read, and google-cloud-storage stood in for)."""

  def local(path):
    text = os.fspath(path)
    return f"{root}/{text.removeprefix('gs://')}" if text.startswith("gs://") else path

  def redirected(original, *args, **kwargs):
    return original(*[local(a) if isinstance(a, str | os.PathLike) else a for a in args], **kwargs)

  functions = ("copy exists glob isdir listdir makedirs mkdir open remove rename replace rmtree stat walk").split()
  with (
    testing.mock_epath(**dict.fromkeys(functions, redirected)),
    mock.patch.object(gpath, "_is_tf_installed", lambda: False),
    mock.patch.object(tensorstore_utils.gcs_utils, "get_kvstore_for_gcs", lambda p: dict(driver="file", path=local(p))),
    mock.patch.object(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False),
    mock.patch.dict(sys.modules, {"google.cloud.storage": mock.MagicMock()}),
  ):
    yield


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
  file = paths.resolve(tmp_path / "results.json")
  paths.write_atomic(file, '{"a": 1}')
  with mock.patch.object(type(file), "replace", side_effect=OSError("disk full")), pytest.raises(OSError):
    paths.write_atomic(file, '{"a": 2}')
  assert json.loads(file.read_text()) == {"a": 1}
  paths.write_atomic(file, b"\x00\x01")
  assert file.read_bytes() == b"\x00\x01"


def test_a_run_in_a_bucket_writes_its_whole_workdir_there(tmp_path, monkeypatch):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  config = simclr_digits.get_config("runlocal")
  config.evals = {"knn": {**config.evals.knn, "every_steps": 2}, "embedding": config.evals.embedding}
  config.evals.embedding.features = ("ssl",)
  config.eval_baselines = ()
  config.total_steps = 4
  bucket = tmp_path / "bucket"
  with fake_bucket(bucket):
    results = experiment.train_and_evaluate(config, "gs://ssljax-test/run")
    run = bucket / "ssljax-test" / "run"
    assert sorted(p.name for p in run.iterdir()) == [
      ".ssljax_run", "checkpoints", "config.json", "metrics.jsonl", "results.json", "tensorboard", "tsne_ssl.png"
    ]  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["4"]
    assert json.loads((run / "results.json").read_text()) == results
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 4
    events = [f for f in (run / "tensorboard").iterdir() if f.name.startswith("events.out.tfevents")]
    assert events and events[0].stat().st_size > 0
    # A saved run in a bucket is restored (config.json, checkpoint) and embedded from there.
    written = embed.embed("gs://ssljax-test/run", "gs://ssljax-test/emb.npz")
    np.testing.assert_array_equal(np.load(bucket / "ssljax-test" / "emb.npz")["features"], written["features"])
  assert list(cwd.iterdir()) == []


def test_a_bucket_without_its_filesystem_libraries_is_a_one_line_error():
  expected = (
    "--workdir: 'gs://ssljax-test/run' needs the libraries of its filesystem (pip install 'ssljax[gcs]' for gs://)"
  )
  with pytest.raises(ConfigError, match=re.escape(expected)):  # The test extra has no google-cloud-storage,
    paths.prepare_workdir("gs://ssljax-test/run")
  with (  # nor gcsfs.
    mock.patch.dict(sys.modules, {"google.cloud.storage": mock.MagicMock()}),
    mock.patch.object(gpath, "_is_tf_installed", lambda: False),
    pytest.raises(ConfigError, match=re.escape(expected)),
  ):
    paths.prepare_workdir("gs://ssljax-test/run")
