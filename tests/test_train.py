"""The train loop: 8-device mesh equals 1 device, accuracy regression, evaluation during and after training.

Kills, preemption, NaN and damaged checkpoints: test_reliability.py; bad input: test_input_validation.py."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from compilations import compiled_functions

from configs import simclr_digits
from ssljax import data, train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(workdir, *overrides, arg="runlocal"):
  command = [sys.executable, "-m", "ssljax.train", f"--config=configs/simclr_digits.py:{arg}", f"--workdir={workdir}"]
  return subprocess.Popen([*command, *overrides], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {row["step"]: row["loss"] for row in map(json.loads, f) if "loss" in row}  # Not evaluation rows.


def test_three_steps_on_8_devices_equal_1_device(mesh8):
  config = simclr_digits.get_config("runlocal")
  source = data.load_source(config.dataset, "train")
  sampler = data.StepIndexedSampler(len(source), config.batch_size, config.seed)
  one_device = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1])
  losses = {}
  for name, mesh in {"1": one_device, "8": mesh8}.items():
    trainer = train_step.build_trainer(config, mesh, len(source), source.num_classes)
    state = trainer.make_state(config.seed)
    losses[name] = []
    for step, batch in data.train_batches(source, sampler, trainer.batch_sharding, 0, 3):
      with compiled_functions() as compiled:
        state, metrics = trainer.step(state, batch)
      losses[name].append(float(metrics["loss"]))
      assert step == 0 or not [f for f in compiled if "train_step" in f], compiled  # One compilation for all steps.
  assert len(set(losses["1"])) == 3  # The loss moves: these are real updates.
  np.testing.assert_allclose(losses["8"], losses["1"], rtol=1e-4)


@pytest.mark.slow  # 3.5 minutes; README command 1 runs the full main job.
def test_digits_accuracy_regression(tmp_path):
  """A shortened main job (1/3 of the default steps) with every evaluator: SSL features must beat both baselines
  with 10 labels/class and raw pixels from 1 to 10 shots (measured: 0.728 / 0.904 / 0.936 vs 0.678 / 0.857 /
  0.900), and fine-tuning on 10% of the labels must beat the same from random init."""
  run = _launch(tmp_path / "w", "--config.total_steps=180", "--config.evals.linear.label_budgets=(10,)", arg="")
  assert run.wait(timeout=900) == 0, run.stderr.read()
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  ssl = results["linear_fast/ssl/10_per_class"]
  assert 0.87 <= ssl <= 1.0, results
  assert (
    ssl > results["linear_fast/raw_pixels/10_per_class"] and ssl > results["linear_fast/random_init/10_per_class"] + 0.2
  )
  for shots in (1, 5, 10):
    assert results[f"fewshot/ssl/{shots}shot"] > results[f"fewshot/raw_pixels/{shots}shot"], results
  assert results["finetune/ssl/10pct"] > results["finetune/random_init/10pct"] + 0.2, results
  for key in ("knn/ssl/k20", "knn/ssl/k200", "fewshot/ssl/25shot", "finetune/ssl/1pct", "tsne/ssl/silhouette"):
    assert key in results, key
  assert results["tsne/ssl/silhouette"] > 0.3  # The t-SNE of SSL features shows class clusters.


@pytest.mark.slow  # Over a minute; the default run stays within CI's 30 minutes.
def test_evaluation_during_training_and_on_a_saved_run(tmp_path):
  """runlocal tracks kNN every 4 steps; `ssljax.evaluate` re-runs the saved config on the last checkpoint with
  overrides and merges into results.json."""
  run = _launch(tmp_path)
  assert run.wait(timeout=600) == 0, run.stderr.read()
  with open(tmp_path / "metrics.jsonl") as f:
    tracked = {row["step"]: row["knn/ssl/k20"] for row in map(json.loads, f) if "knn/ssl/k20" in row}
  assert sorted(tracked) == [4, 8] and all(0 <= v <= 1 for v in tracked.values())
  first = json.loads((tmp_path / "results.json").read_text())
  expected = {"linear_fast", "linear_simclr", "knn", "fewshot", "finetune", "tsne"}
  assert {key.split("/")[0] for key in first} == expected and "finetune/ssl/10pct" in first
  assert "linear_simclr/ssl/all" in first and "linear_simclr/random_init/all" not in first  # runlocal: no baseline.
  assert (tmp_path / "tsne_ssl.png").exists()

  command = [sys.executable, "-m", "ssljax.evaluate", f"--workdir={tmp_path}", "--config.evals.knn.ks=(5,)"]
  evaluated = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert evaluated.returncode == 0, evaluated.stderr
  assert "step 12" in evaluated.stdout
  merged = json.loads((tmp_path / "results.json").read_text())
  assert "knn/ssl/k5" in merged and merged["knn/ssl/k20"] == first["knn/ssl/k20"]
  assert (
    merged["linear_fast/ssl/10_per_class"] == first["linear_fast/ssl/10_per_class"]
  )  # Same checkpoint, same number.

  missing = subprocess.run(
    [*command[:3], f"--workdir={tmp_path / 'nothing'}"], cwd=REPO, capture_output=True, text=True
  )
  assert missing.returncode == 2 and "config.json does not exist" in missing.stderr.strip().splitlines()[-1]
