"""Pretrain a self-supervised method, then evaluate its features.

  python -m ssljax.train --config configs/simclr_digits.py[:arg] [--config.key=value ...] --workdir DIR

Writes DIR/metrics.jsonl, DIR/tensorboard/, DIR/checkpoints/ (re-launching with the same DIR resumes from the
latest one) and DIR/results.json.
"""

import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from ssljax import checkpoint, data, evaluators, optim, sharding
from ssljax.config import ConfigError
from ssljax.methods import build_method
from ssljax.metric_writer import MetricWriter
from ssljax.train_step import WithOnlineProbe, init_state, train_step

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file, optionally with ':arg'.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")


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


def total_steps(config, num_examples: int) -> int:
  if config.get("total_steps"):
    return config.total_steps
  return int(config.epochs * num_examples // config.batch_size)


def run(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints) and returns the evaluation results."""
  prepare_workdir(workdir)
  sharding.check_batch_size(config.batch_size)
  mesh = sharding.make_mesh()
  batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)

  train_source = data.load_source(config.dataset, config.dataset.train_split)
  sampler = data.StepIndexedSampler(len(train_source), config.batch_size, config.seed)
  num_steps = total_steps(config, len(train_source))
  method = build_method(config)
  model = WithOnlineProbe(method.model, train_source.num_classes)
  tx, schedule = optim.make_optimizer(config, config.batch_size, num_steps)

  size = config.dataset.image_size
  sample_inputs = method.make_inputs(jnp.zeros((1, size, size, config.dataset.channels)), jax.random.PRNGKey(0))
  make_state = functools.partial(init_state, model, tx, sample_inputs)
  state_shapes = jax.eval_shape(make_state, config.seed)
  state_sharding = jax.tree.map(lambda _: replicated, state_shapes)

  manager = checkpoint.make_manager(workdir, config.get("keep_checkpoints", 3))
  state = checkpoint.restore_latest(manager, checkpoint.abstract_like(state_shapes, state_sharding))
  if state is None:
    state = jax.jit(make_state, static_argnums=0, out_shardings=state_sharding)(config.seed)
  start_step = int(state.step)

  step_fn = jax.jit(
    functools.partial(train_step, model=model, method=method, tx=tx, schedule=schedule),
    donate_argnums=0,
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=(state_sharding, replicated),
  )
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
  for step, batch in data.train_batches(train_source, sampler, batch_sharding, start_step, num_steps):
    state, metrics = step_fn(state, batch)
    progress.update(1)
    done = step + 1
    if done % config.log_every == 0 or done == num_steps:
      metrics = jax.device_get(metrics)
      steps_per_sec = (done - last_log[0]) / (time.perf_counter() - last_log[1])
      last_log = (done, time.perf_counter())
      writer.write(done, {**metrics, "steps_per_sec": steps_per_sec})
      progress.set_postfix(loss=f"{metrics['loss']:.4f}", probe_acc=f"{metrics['probe_accuracy']:.3f}")
      if not np.isfinite(metrics["loss"]):
        raise FloatingPointError(f"loss became {metrics['loss']} at step {done}")
    if done % config.checkpoint_every == 0 or done == num_steps:
      checkpoint.save(manager, state)
  progress.close()
  writer.close()
  manager.wait_until_finished()

  results = evaluate(config, model, state, tx, sample_inputs, batch_sharding)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
    print(format_results(results))
  return results


def evaluate(config, model, state, tx, sample_inputs, batch_sharding) -> dict:
  """Runs `config.evals` on the trained encoder against the baselines of `config.eval_baselines`."""
  random_state = init_state(model, tx, sample_inputs, config.seed + 1)

  def encoder_features(variables):
    return jax.jit(lambda images: model.apply(variables, images, method=WithOnlineProbe.encode))

  featurizers = {"ssl": encoder_features({"params": state.params, **state.model_state})}
  baselines = {
    "random_init": lambda: encoder_features({"params": random_state.params, **random_state.model_state}),
    "raw_pixels": lambda: jax.jit(lambda images: images.reshape(images.shape[0], -1)),
  }
  for name in config.eval_baselines:
    featurizers[name] = baselines[name]()
  train_source = data.load_source(config.dataset, config.dataset.train_split)
  test_source = data.load_source(config.dataset, config.dataset.test_split)
  return evaluators.run_evaluators(
    config.evals, featurizers, train_source, test_source, config.eval_batch_size, batch_sharding
  )


def format_results(results: dict) -> str:
  """A table with one row per feature set and one column per (evaluator, setting)."""
  rows, columns = {}, []
  for key, value in results.items():
    evaluator, features, setting = key.split("/")
    column = f"{evaluator}/{setting}"
    columns += [column] if column not in columns else []
    rows.setdefault(features, {})[column] = value
  width = max(len(c) for c in columns) + 2
  lines = ["features".ljust(14) + "".join(c.rjust(width) for c in columns)]
  for features, values in rows.items():
    lines.append(features.ljust(14) + "".join(f"{values.get(c, float('nan')):.4f}".rjust(width) for c in columns))
  return "\n".join(lines)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CONFIG.value is None or _WORKDIR.value is None:
    print("error: --config and --workdir are required", file=sys.stderr)
    sys.exit(2)
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
