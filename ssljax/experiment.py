"""A run: train a config in a workdir (resuming from its checkpoints), evaluate along the way and at the end.

`python -m ssljax.train` and `python -m ssljax.evaluate` are thin commands around `train_and_evaluate` and
`evaluate`. A workdir holds config.json, metrics.jsonl, tensorboard/, checkpoints/, results.json and the images
written by evaluators.
"""

import functools
import json
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from ssljax import checkpoint, data, evaluators, sharding
from ssljax.config import ConfigError, require_choice
from ssljax.metric_writer import MetricWriter
from ssljax.train_step import Trainer, build_trainer, run_steps

CONFIG_FILE = "config.json"  # The run's config, as `python -m ssljax.evaluate --workdir` reads it back.


def prepare_workdir(workdir: str):
  """Creates `workdir` and proves it writable before any compute is spent."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as error:
    raise ConfigError(f"--workdir: {workdir!r} is not writable ({error.strerror})") from None


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints) and returns the evaluation results."""
  prepare_workdir(workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  mesh = sharding.make_mesh()
  train_source = data.load_source(config.dataset, config.dataset.train_split)
  trainer = build_trainer(config, mesh, len(train_source), train_source.num_classes)
  sampler = data.StepIndexedSampler(len(train_source), config.batch_size, config.seed)
  num_steps = trainer.num_steps

  manager = checkpoint.make_manager(workdir, config.get("keep_checkpoints", 3))
  state_shapes = jax.eval_shape(trainer.make_state, config.seed)
  state = checkpoint.restore_latest(manager, checkpoint.abstract_like(state_shapes, trainer.state_sharding))
  if state is None:
    state = trainer.make_state(config.seed)
  start_step = int(state.step)
  step_fn, batch_sharding = trainer.step, trainer.batch_sharding
  writer = MetricWriter(workdir)
  progress = tqdm(
    total=num_steps,
    initial=start_step,
    unit="step",
    desc=config.method,
    disable=jax.process_index() != 0,
    dynamic_ncols=True,
  )
  last_log = (start_step, time.perf_counter())
  batches = data.train_batches(train_source, sampler, batch_sharding, start_step, num_steps)
  for step, new_state, metrics in run_steps(step_fn, state, batches):
    state = new_state
    progress.update(1)
    done = step + 1
    if done % config.log_every == 0 or done == num_steps:
      metrics = jax.device_get(metrics)
      steps_per_sec = (done - last_log[0]) / (time.perf_counter() - last_log[1])
      last_log = (done, time.perf_counter())
      writer.write(done, {**metrics, "steps_per_sec": steps_per_sec})
      progress.set_postfix({k: f"{metrics[k]:.4f}" for k in ("loss", "probe_accuracy") if k in metrics})
      if not np.isfinite(metrics["loss"]):
        raise FloatingPointError(f"loss became {metrics['loss']} at step {done}")
    if done % config.checkpoint_every == 0 or done == num_steps:
      checkpoint.save(manager, state)
    if done < num_steps and evaluators.due(config.evals, done):
      writer.write(done, evaluate(config, workdir, mesh, trainer, state, train_source, writer, step=done))
  progress.close()
  manager.wait_until_finished()

  results = evaluate(config, workdir, mesh, trainer, state, train_source, writer)
  writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
    print(format_results(results))
  return results


def evaluate(config, workdir: str, mesh, trainer: Trainer, state, train_source, writer=None, step=None) -> dict:
  """Runs `config.evals` on the trained model against the baselines of `config.eval_baselines`; at a training
  `step`, only the evaluators due then (`every_steps`), without baselines."""
  encode = trainer.encode

  def variables_of(state):
    return {"params": state.params, **state.model_state}

  baselines = {
    "random_init": lambda: functools.partial(encode, variables_of(trainer.make_state(config.seed + 1))),
    "raw_pixels": lambda: jax.jit(lambda images: images.reshape(images.shape[0], -1)),
  }
  featurizers = {"ssl": functools.partial(encode, variables_of(state))}
  for name in config.eval_baselines if step is None else ():  # Baselines do not change during training.
    featurizers[name] = baselines[require_choice(name, baselines, "config.eval_baselines")]()
  context = evaluators.EvalContext(
    config=config,
    workdir=workdir,
    mesh=mesh,
    batch_sharding=trainer.batch_sharding,
    model=trainer.model,
    variables=variables_of(state),
    featurizers=featurizers,
    train_source=train_source,
    test_source=data.load_source(config.dataset, config.dataset.test_split),
    writer=writer,
  )
  return evaluators.run_evaluators(config.evals, context, step)


def format_results(results: dict) -> str:
  """A table with one row per evaluator setting and one column per feature set ("ssl", then the baselines)."""
  rows, columns = {}, []
  for key, value in results.items():
    evaluator, features, setting = key.split("/")
    columns += [features] if features not in columns else []
    rows.setdefault(f"{evaluator}/{setting}", {})[features] = value
  columns.sort(key=lambda c: c != "ssl")  # SSL first, then the baselines in order of appearance.
  first = max(len(r) for r in rows) + 2
  widths = [max(len(c), 6) + 2 for c in columns]
  lines = ["".ljust(first) + "".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
  for row, values in rows.items():
    cells = [(f"{values[c]:.4f}" if c in values else "-").rjust(w) for c, w in zip(columns, widths, strict=True)]
    lines.append(row.ljust(first) + "".join(cells))
  return "\n".join(lines)
