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
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from ssljax import checkpoint, data, evaluators, sharding
from ssljax.config import ConfigError, require_choice
from ssljax.metric_writer import MetricWriter
from ssljax.train_step import Trainer, build_trainer, run_steps

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file, optionally with ':arg'.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_CPU_DEVICES = flags.DEFINE_integer(
  "cpu_devices",
  8,
  "Virtual devices the CPU backend is split into (no effect on GPU/TPU); 8 runs ~2x faster than 1 on 2 cores.",
)


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


def run(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints) and returns the evaluation results."""
  prepare_workdir(workdir)
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
  progress.close()
  manager.wait_until_finished()

  results = evaluate(config, workdir, mesh, trainer, state, train_source, writer)
  writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
    print(format_results(results))
  return results


def evaluate(config, workdir: str, mesh, trainer: Trainer, state, train_source, writer=None) -> dict:
  """Runs `config.evals` on the trained model against the baselines of `config.eval_baselines`."""
  # Variables are arguments, not closed-over constants: one compilation serves every encoder.
  encode = jax.jit(lambda variables, images: trainer.model.apply(variables, images, method="encode"))

  def variables_of(state):
    return {"params": state.params, **state.model_state}

  baseline_variables = {"random_init": variables_of(trainer.make_state(config.seed + 1))}
  baselines = {
    "random_init": lambda: functools.partial(encode, baseline_variables["random_init"]),
    "raw_pixels": lambda: jax.jit(lambda images: images.reshape(images.shape[0], -1)),
  }
  featurizers = {"ssl": functools.partial(encode, variables_of(state))}
  for name in config.eval_baselines:
    featurizers[name] = baselines[require_choice(name, baselines, "config.eval_baselines")]()
  context = evaluators.EvalContext(
    config=config,
    workdir=workdir,
    mesh=mesh,
    batch_sharding=trainer.batch_sharding,
    model=trainer.model,
    variables=variables_of(state),
    baseline_variables=baseline_variables,
    featurizers=featurizers,
    train_source=train_source,
    test_source=data.load_source(config.dataset, config.dataset.test_split),
    writer=writer,
  )
  return evaluators.run_evaluators(config.evals, context)


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


def parse_flags(argv):
  """absl flag parsing with a one-line error for unknown flags and config keys (`--config.no_such_key`)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    print(f"error: {error}", file=sys.stderr)
  except (AttributeError, KeyError) as error:  # ml_collections: an override of a key the config does not have.
    print(f"error: --config: unknown config key {str(error.args[0]).strip(chr(34))}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if _CONFIG.value is None or _WORKDIR.value is None:
      raise ConfigError("--config and --workdir are required")
    run(_CONFIG.value, _WORKDIR.value)
  except OSError as error:  # The config file could not be loaded.
    print(f"error: --config: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(2)
  except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
