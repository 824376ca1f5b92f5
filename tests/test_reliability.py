"""Runs that are killed, preempted, hit NaN or find damaged checkpoints end with exactly the losses of a run that
was never disturbed. (A workdir of an incompatible config: the last row of docs/input_validation.md.)"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import simclr_digits
from ssljax import checkpoint, data, experiment, paths, pretrained, sharding, train_step
from ssljax.config import ConfigError
from tests import tiny_tfds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("--config.total_steps=16", "--config.log_every=1", "--config.checkpoint_every=3")


def _launch(workdir, *overrides, method="simclr"):
  dataset = {"gpt": "python_docs", "bert": "python_docs", "word2vec": "python_docs", "colorization": "cifar10"}
  config = f"configs/{method}_{dataset.get(method, 'digits')}.py:runlocal,train_only"
  command = [sys.executable, "-m", "ssljax.train", f"--config={config}"]
  if method == "colorization":  # The tests' tiny colour dataset.
    data_dir = tiny_tfds.prepared_colours()
    command += [f"--config.dataset.name={tiny_tfds.COLOURS_NAME}", f"--config.dataset.data_dir={data_dir}"]
    command += [f"--config.dataset.image_size={tiny_tfds.COLOURS_SIDE}"]
  command += [f"--workdir={workdir}", *STEPS, *overrides]
  return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def _losses(workdir) -> dict:
  """{step: loss} over every launch in `workdir` (a GAN's: the players' losses, a tuple); a step logged again after a
  resume keeps its last value."""
  losses = {}
  for row in _rows(workdir):
    players = tuple(row[k] for k in sorted(row) if k.endswith("/loss"))
    if "loss" in row or players:
      losses[row["step"]] = row["loss"] if "loss" in row else players
  return losses


def _wait_for_step(run, workdir, step: int, timeout: float = 300):
  deadline = time.time() + timeout
  while max(_losses(workdir), default=0) < step:
    assert run.poll() is None, f"run ended before step {step}: {run.stderr.read()}"
    assert time.time() < deadline
    time.sleep(0.05)


def _uninterrupted_losses(workdir, method="simclr"):
  run = _launch(workdir, method=method)
  assert run.wait(timeout=300) == 0, run.stderr.read()
  losses = _losses(workdir)
  # Every step a real update (DeepCluster-v2's first epoch, steps 1 and 2, only fills its bank: loss 0).
  trained = [loss for loss in losses.values() if loss != 0.0]
  assert sorted(losses) == list(range(1, 17)) and len(set(trained)) == len(trained) >= 14
  return losses


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory):
  return _uninterrupted_losses(tmp_path_factory.mktemp("reference"))


SLOW = pytest.mark.slow  # The other methods; the default run resumes each in-process (tests/test_methods.py:
# checkpoint after step 1, every leaf bit-exact after step 3; tests/test_deepcluster.py: stopped mid-epoch).


@pytest.mark.parametrize(
  "method",
  [
    "simclr",
    *(
      pytest.param(m, marks=SLOW)
      for m in (
        "byol",
        "simsiam",
        "moco_v2",
        "moco_v3",
        "dino",
        "barlow_twins",
        "vicreg",
        "swav",
        "deepcluster_v2",
        "deepcluster",
        "clip",
        "siglip",
        "gpt",
        "bert",
        "word2vec",
        "rotation",
        "jigsaw",
        "context_prediction",
        "autoencoder",
        "context_encoder",
        "cpc",
        "colorization",
        "pixelcnn",
        "gan",
        "cyclegan",
      )
    ),
  ],
)
def test_sigkill_at_random_steps_then_resume_gives_the_same_losses_bit_for_bit(method, tmp_path, request):
  expected = (
    request.getfixturevalue("reference_losses")
    if method == "simclr"
    else _uninterrupted_losses(tmp_path / "reference", method)
  )
  rng = random.Random(os.environ.get("PYTEST_SEED", "sigkill"))
  kill_after = sorted(rng.sample(range(2, 15), 3))  # Anywhere: between checkpoints, during async saves.
  workdir = tmp_path / "killed"
  for step in kill_after:
    run = _launch(workdir, method=method)
    _wait_for_step(run, workdir, step)
    run.send_signal(signal.SIGKILL)
    run.wait()
  resumed = _launch(workdir, method=method)
  assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
  assert _losses(workdir) == expected, kill_after  # Exact float equality, every step.


def test_sigterm_and_sigint_save_the_step_exit_0_and_the_run_continues_from_it(tmp_path, reference_losses):
  for signum, after_step in ((signal.SIGTERM, 4), (signal.SIGINT, 10)):
    run = _launch(tmp_path)
    _wait_for_step(run, tmp_path, after_step)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    stopped_at = max(_losses(tmp_path))
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == stopped_at < 16, (saved, stopped_at)  # The checkpoint holds the last finished step.
    assert f"preempted: saved step {stopped_at}" in stderr

  resumed = _launch(tmp_path)
  assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
  rows = [row["step"] for row in _rows(tmp_path) if "loss" in row]
  assert rows == list(range(1, 17)), rows  # Each launch continued from the saved step: nothing replayed or skipped.
  assert _losses(tmp_path) == reference_losses


def _train_only_config(**overrides):
  config = simclr_digits.get_config("runlocal,train_only")
  config.update(dict(total_steps=16, log_every=1, checkpoint_every=3), **overrides)
  return config


def _saved_states(workdir, trainer, config):
  manager = checkpoint.make_manager(workdir)
  abstract = checkpoint.abstract_like(jax.eval_shape(trainer.make_state, config.seed), trainer.state_sharding)
  return {s: manager.restore(s, args=checkpoint.ocp.args.StandardRestore(abstract)) for s in manager.all_steps()}


def test_nan_batches_are_skipped_then_rolled_back_and_no_checkpoint_holds_nan(tmp_path, monkeypatch):
  """Batches 7, 8 and 9 (steps 8-10) are poisoned with NaN; after 3 skipped updates the run restores step 6 (the
  checkpoint at 9 is withheld during the streak), moves the input past batch 9 and trains to step 16."""
  poisoned = {7, 8, 9}
  train_batches = data.train_batches

  def poisoned_batches(source, sampler, sharding_, start, stop, **kwargs):
    for position, batch in train_batches(source, sampler, sharding_, start, stop, **kwargs):
      if position in poisoned:
        batch = {**batch, "image": batch["image"] * jnp.nan}
      yield position, batch

  monkeypatch.setattr(data, "train_batches", poisoned_batches)
  config = _train_only_config()
  experiment.train_and_evaluate(config, str(tmp_path))

  rows = _rows(tmp_path)
  skipped = [row["step"] for row in rows if row.get("nonfinite")]
  assert skipped == [8, 9, 10], skipped
  rollbacks = [row for row in rows if "rollback_to_step" in row]
  assert rollbacks == [{"step": 10, "rollback_to_step": 6, "rollback_data_position": 10}]
  after = [row["step"] for row in rows[rows.index(rollbacks[0]) :] if "loss" in row]
  assert after == list(range(7, 17)) and all(np.isfinite(_losses(tmp_path)[s]) for s in after)

  mesh = sharding.make_mesh()
  source = data.load_source(config.dataset, "train")
  trainer = train_step.build_trainer(config, mesh, len(source), source.num_classes)
  states = _saved_states(tmp_path, trainer, config)
  assert 16 in states and 9 not in states
  for step, state in states.items():
    assert bool(train_step.all_finite(state)), step
  assert int(states[16].position) == 20  # 16 steps, plus batches 6-9 (rolled back or bad) moved past.


def test_a_step_with_a_nan_batch_leaves_the_state_unchanged_and_finite():
  config = _train_only_config()
  source = data.load_source(config.dataset, "train")  # The runs' mesh: their compiled step is reused.
  trainer = train_step.build_trainer(config, sharding.make_mesh(), len(source), source.num_classes)
  state = trainer.make_state(config.seed)
  params = jax.device_get(state.params)
  batch = data.global_batch(source.get(np.arange(config.batch_size)), trainer.batch_sharding)
  batch["image"] = batch["image"].at[0, 0, 0, 0].set(jnp.nan)  # One pixel of one image.
  state, metrics = trainer.step(state, batch)
  assert int(metrics["nonfinite"]) == 1 and (int(state.step), int(state.position)) == (1, 1)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), params)
  assert bool(train_step.all_finite(state))  # What a checkpoint of it would hold.


def test_unreadable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
  config = _train_only_config(keep_checkpoints=3)
  experiment.train_and_evaluate(config, str(tmp_path))
  expected = _losses(tmp_path)
  newest = tmp_path / "checkpoints" / "16"
  for root, _, files in os.walk(newest):
    for name in files:
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 2)

  snapshot = _files(tmp_path)
  encoder, variables, _ = pretrained.load_encoder(str(tmp_path))  # Reads 15; a reading command moves nothing.
  assert encoder is not None and variables
  assert _files(tmp_path) == snapshot and not (tmp_path / checkpoint.UNREADABLE_DIR).exists()

  experiment.train_and_evaluate(config, str(tmp_path))  # Restores 15, trains step 16 again.
  assert (tmp_path / checkpoint.UNREADABLE_DIR / "16").is_dir()  # Kept for inspection, not deleted.
  rows = [row for row in _rows(tmp_path) if "loss" in row]
  assert [row["step"] for row in rows] == [*range(1, 17), 16]
  assert rows[-1]["loss"] == expected[16]
  assert (tmp_path / "checkpoints" / "16").is_dir()


def _files(path) -> dict:
  return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_folder_that_is_not_a_run_is_refused_and_left_byte_identical(tmp_path):
  """--workdir naming someone's folder (its own config.json, results.json, metrics.jsonl and a checkpoint that
  orbax cannot read): training refuses it with one line before writing anything, and the reading commands
  refuse it too; every file stays byte-identical and nothing is added."""
  folder = tmp_path / "theirs"
  (folder / "checkpoints" / "100").mkdir(parents=True)
  (folder / "checkpoints" / "100" / "model.pt").write_bytes(b"\x80\x04weights")
  (folder / "config.json").write_text('{"lr": 0.1, "epochs": 90}')
  (folder / "results.json").write_text('{"top1": 0.76}')
  (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 2.3}\n')
  before = _files(folder)
  with pytest.raises(ConfigError, match="holds checkpoints, config.json, metrics.jsonl and 1 more but no ssljax run"):
    experiment.train_and_evaluate(_train_only_config(), str(folder))
  with pytest.raises(ConfigError, match="is not an ssljax run"):
    pretrained.load_encoder(str(folder))
  assert _files(folder) == before and sorted(p.name for p in folder.iterdir()) == sorted(
    ["checkpoints", "config.json", "results.json", "metrics.jsonl"]
  )


def test_runs_from_before_the_marker_and_empty_folders_are_adopted(tmp_path):
  """A run written before workdirs were marked (its config.json is ssljax's) resumes, and gets the marker; an
  existing empty folder (hidden files aside) becomes a run."""
  config = _train_only_config(total_steps=2, checkpoint_every=1)
  experiment.train_and_evaluate(config, str(tmp_path / "old"))
  (tmp_path / "old" / paths.RUN_MARKER).unlink()
  config.total_steps = 3
  experiment.train_and_evaluate(config, str(tmp_path / "old"))
  assert [row["step"] for row in _rows(tmp_path / "old") if "loss" in row] == [1, 2, 3]
  assert (tmp_path / "old" / paths.RUN_MARKER).exists()
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / ".DS_Store").write_bytes(b"\x00")
  experiment.train_and_evaluate(config, str(tmp_path / "empty"))
  assert (tmp_path / "empty" / paths.RUN_MARKER).exists() and (tmp_path / "empty" / ".DS_Store").read_bytes() == b"\x00"


def test_a_hand_edited_config_json_is_validated_by_every_command_that_reads_it(tmp_path):
  """evaluate / embed / load_encoder validate a run's config.json as training validates a config (one line naming
  the file); training itself rewrites a config.json that is no longer JSON, with a warning."""
  config = _train_only_config(total_steps=1, checkpoint_every=1)
  experiment.train_and_evaluate(config, str(tmp_path))
  path = tmp_path / "config.json"
  good = json.loads(path.read_text())
  edits = {
    "{not json": "is not valid JSON",
    json.dumps({k: v for k, v in good.items() if k != "dataset"}): "config.json: config.dataset: missing",
    json.dumps({**good, "batch_size": "abc"}): "config.json: config.batch_size: expected int, got str 'abc'",
    "[1, 2]": "holds a list, not a config",
  }
  command = [sys.executable, "-m", "ssljax.evaluate", f"--workdir={tmp_path}"]
  evaluate = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert evaluate.returncode == 2, evaluate.stderr
  assert evaluate.stderr.strip().splitlines()[-1] == (
    "error: config.evals: the run's config has no evaluators (a train_only run?): nothing to evaluate"
  )
  for text, message in edits.items():
    path.write_text(text)
    if text.startswith("{not"):  # The CLI once (each call costs an interpreter start): it reads the file itself.
      evaluate = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
      assert evaluate.returncode == 2 and message in evaluate.stderr.strip().splitlines()[-1], evaluate.stderr
    with pytest.raises(ConfigError, match=re.escape(message)):
      experiment.load_config(str(tmp_path))
    with pytest.raises(ConfigError, match=re.escape(message)):
      pretrained.load_encoder(str(tmp_path))
  path.write_text("{not json")
  config.total_steps = 2
  experiment.train_and_evaluate(config, str(tmp_path))
  assert json.loads(path.read_text())["total_steps"] == 2
