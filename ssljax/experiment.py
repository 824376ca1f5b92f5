"""A run: train a config in a workdir (resuming from its checkpoints), evaluate along the way and at the end.

`python -m ssljax.train` and `python -m ssljax.evaluate` are thin commands around `train_and_evaluate` and
`evaluate`. A workdir holds config.json, metrics.jsonl, tensorboard/, checkpoints/, results.json and the images
written by evaluators.
"""

import copy
import functools
import json
import time

import jax
import jax.numpy as jnp
from absl import logging
from ml_collections import ConfigDict, config_dict
from tqdm import tqdm

from ssljax import baselines as baselines_lib
from ssljax import checkpoint, config_checks, data, evaluators, paths, sharding
from ssljax.config import ConfigError, require_choice
from ssljax.metric_writer import MetricWriter
from ssljax.preemption import PreemptionWatch
from ssljax.train_step import Trainer, build_trainer, encoder_variables, eval_variables, replace_encoder, run_steps

CONFIG_FILE = paths.CONFIG_FILE  # The run's config, as `python -m ssljax.evaluate --workdir` reads it back.
RESULTS_FILE = "results.json"
MAX_NONFINITE_STEPS = 3  # Default of config.max_nonfinite_steps: skipped updates in a row before a rollback.
MAX_ROLLBACKS = 3  # Default of config.max_rollbacks: then the run stops with an error.


def train_and_evaluate(config, workdir: str) -> dict | None:
  """Trains `config` in `workdir` (resuming if it holds checkpoints) and returns the evaluation results, or None
  when a preemption signal stopped training (a checkpoint of the last step is saved; re-launch to continue)."""
  config_checks.validate(config)
  paths.prepare_workdir(workdir)
  mesh = sharding.make_mesh(config.get("mesh", sharding.DEFAULT_MESH))
  train_source = data.load_source(config.dataset, config.dataset.train_split, config.get("text"))
  test_source = data.load_source(config.dataset, config.dataset.test_split, config.get("text"))
  data.check_test_labels(train_source, test_source, config.dataset)
  config = with_resolved_data_dir(config, train_source)
  trainer = build_trainer(
    config,
    mesh,
    data.num_examples(train_source),
    train_source.num_classes,
    data.token_counts(train_source, config),
    train_source,
  )
  data.train_sampler(train_source, config.batch_size, config.seed).process_indices(0)  # Batch fits?

  paths.mark_run(workdir)
  manager = checkpoint.make_manager(workdir, config.keep_checkpoints)
  state = restore(config, workdir, trainer, manager) or trainer.make_state(config.seed)
  write_config(config, workdir)
  writer = MetricWriter(workdir)
  with PreemptionWatch() as preemption:
    state = train(config, workdir, mesh, trainer, manager, state, (train_source, test_source), writer, preemption)
  manager.wait_until_finished()
  if state is None:
    writer.close()
    return None

  failures = []
  results = evaluate(
    config, workdir, mesh, trainer, state, train_source, writer, test_source=test_source, failures=failures
  )
  writer.close()
  if jax.process_index() == 0:
    paths.write_atomic(paths.resolve(workdir) / RESULTS_FILE, json.dumps(results, indent=2, sort_keys=True))
    print(format_results(results) if results else f"trained {trainer.num_steps} steps; no evaluators configured")
  raise_failures(failures)
  return results


def raise_failures(failures: list[str]):
  """One line for the evaluators that failed (their results are missing from results.json, the others' are
  there)."""
  if failures:
    raise ConfigError("; ".join(failures) + f" (the other evaluators' results are in {RESULTS_FILE})")


def with_resolved_data_dir(config, source):
  """`config` with `dataset.data_dir` set to where `source` was read from when the config left it to tfds
  ($TFDS_DATA_DIR or tfds's default), so that the saved config.json alone re-evaluates the run."""
  where = getattr(source, "data_dir", None)
  if where is None or config.dataset.get("data_dir"):
    return config
  config = copy.deepcopy(config)
  config.dataset.data_dir = where
  return config


def restore(config, workdir: str, trainer: Trainer, manager, read_only: bool = False):
  """The newest readable checkpoint of `workdir` (None if there is none); one-line ConfigError when it was
  written by an incompatible config, naming the config keys that changed since. `read_only` (commands that only
  read a run): unreadable checkpoints are skipped, not set aside."""
  abstract = checkpoint.abstract_like(jax.eval_shape(trainer.make_state, config.seed), trainer.state_sharding)
  try:
    return checkpoint.restore_latest(manager, abstract, set_aside=not read_only)
  except checkpoint.IncompatibleCheckpoint as error:
    changed = ", ".join(config_checks.changed_keys(saved_config(workdir), config)) or "none"
    raise ConfigError(
      f"--workdir: {workdir} holds a run of another config ({error}; keys changed: {changed})"
    ) from None


def _tuples(value):
  """JSON turns the config's tuples into lists; turn them back (tuples are hashable, lists are not)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_config(workdir: str, validate: bool = True) -> ConfigDict:
  """The config a run saved in `workdir` (which must be an ssljax run: `paths.check_run`), validated as training
  validates a config: a hand-edited config.json that is not JSON, lacks a section or has a key of the wrong type
  is a one-line ConfigError naming the file. Without `validate` (which builds the mesh, so starts JAX's backends)
  only the JSON is checked: `python -m ssljax.evaluate` validates after its flags and devices are set."""
  path = paths.check_run(workdir) / CONFIG_FILE
  try:
    saved = json.loads(path.read_text())
  except FileNotFoundError:
    raise ConfigError(f"--workdir: {path} does not exist (not a training run's directory?)") from None
  except ValueError as error:
    raise ConfigError(f"--workdir: {path} is not valid JSON ({error})") from None
  if not isinstance(saved, dict):
    raise ConfigError(f"--workdir: {path} holds a {type(saved).__name__}, not a config")
  config = ConfigDict(_tuples(saved))
  try:
    if validate:
      config_checks.validate(config)
    elif not isinstance(config.get("dataset"), ConfigDict):
      raise ConfigError("config.dataset: missing")
  except ConfigError as error:
    raise ConfigError(f"--workdir: {path}: {error}") from None
  if config.dataset.get("data_dir") is None:  # JSON's null would not take a path on the command line.
    config.dataset.data_dir = config_dict.placeholder(str)
  return config


def saved_config(workdir: str) -> dict:
  """The config.json of a previous run in `workdir`, or {} if there is none (or it is no longer readable: the run
  rewrites it)."""
  path = paths.resolve(workdir) / CONFIG_FILE
  try:
    saved = json.loads(path.read_text()) if path.exists() else {}
  except ValueError:
    logging.warning("%s is not valid JSON: it is rewritten with this run's config", path)
    return {}
  return saved if isinstance(saved, dict) else {}


def write_config(config, workdir: str):
  """Saves the config a run trains with (after the checkpoint proved compatible: a rejected config overwrites
  nothing); a resume with changed keys is allowed (e.g. more steps) and logged."""
  saved = saved_config(workdir)
  changed = config_checks.changed_keys(saved, config)
  if changed and saved:
    logging.warning("resuming %s with changed config keys: %s", workdir, ", ".join(changed))
  if jax.process_index() == 0:
    paths.write_atomic(paths.resolve(workdir) / CONFIG_FILE, config.to_json_best_effort(indent=2, sort_keys=True))


def train(config, workdir: str, mesh, trainer: Trainer, manager, state, sources, writer, preemption):
  """The train loop from `state` to `trainer.num_steps`; returns the final state, or None after a preemption
  (having saved the state it stopped at).

  A step whose update was skipped for a non-finite value reports `nonfinite`; after `config.max_nonfinite_steps`
  in a row the loop restores the newest checkpoint, moves the input past the bad batches and goes on (at most
  `config.max_rollbacks` times). The flag of step s is read while step s + 1 runs, so checking costs no sync.
  """
  train_source, test_source = sources
  views_source = data.views_source(train_source, config, trainer.method.crops, config.seed)
  max_bad_streak = config.get("max_nonfinite_steps", MAX_NONFINITE_STEPS)
  sampler = data.train_sampler(train_source, config.batch_size, config.seed)
  num_steps = trainer.num_steps
  progress = tqdm(
    total=num_steps,
    initial=int(state.step),
    unit="step",
    desc=config.method,
    disable=jax.process_index() != 0,
    dynamic_ncols=True,
  )
  rollbacks = 0
  while int(state.step) < num_steps:
    first_step, first_position = int(state.step), int(state.position)
    progress.reset(num_steps)
    progress.update(first_step)
    last_log = (first_step, time.perf_counter())
    end = first_position + num_steps - first_step
    step_sampler = sampler
    per_epoch = trainer.method.per_epoch
    if per_epoch is not None:  # This period's start (DeepCluster's clustering), then its order of examples.
      period = max(1, round(per_epoch.period_epochs * sampler.steps_per_epoch))
      epoch = first_position // period
      state = start_epoch(config, trainer, state, train_source, epoch)
      order = per_epoch.order(jax.device_get(state.model_state), epoch, config.seed, period * config.batch_size)
      step_sampler = data.OrderSampler(order, epoch * period, config.batch_size)
      end = min(end, (epoch + 1) * period)
    workers = config.dataset.get("worker_processes", 0)
    batches = data.train_batches(
      views_source, step_sampler, trainer.batch_sharding, first_position, end, worker_processes=workers
    )
    bad_streak, previous = 0, None
    for position, new_state, metrics in run_steps(trainer.step, state, batches):
      state, done = new_state, first_step + position - first_position + 1
      progress.update(1)
      if previous is not None:  # The step before this one has finished: is its update skipped?
        bad_streak = bad_streak + 1 if int(previous["nonfinite"]) else 0
        if bad_streak >= max_bad_streak:
          break
      previous = metrics
      if done % config.log_every == 0 or done == num_steps:
        metrics = jax.device_get(metrics)
        steps_per_sec = (done - last_log[0]) / (time.perf_counter() - last_log[1])
        last_log = (done, time.perf_counter())
        writer.write(done, {**metrics, "steps_per_sec": steps_per_sec})
        shown = [k for k in metrics if k in ("loss", "probe_accuracy") or k.endswith("/loss")]  # "/": a player's.
        progress.set_postfix({k: f"{metrics[k]:.4f}" for k in shown})
      if preemption.reached():
        if done not in manager.all_steps():
          checkpoint.save(manager, state, force=True)
        logging.warning("preempted: saved step %d; re-launch the same command to continue", done)
        progress.close()
        return None
      # A periodic checkpoint is withheld during a streak of skipped updates: a rollback must reach a good one.
      if (done % config.checkpoint_every == 0 and not bad_streak) or done == num_steps:
        checkpoint.save(manager, state)
      if done < num_steps and evaluators.due(config.evals, done):
        results = evaluate(config, workdir, mesh, trainer, state, train_source, writer, done, test_source)
        writer.write(done, results)
    else:
      continue  # Finished the steps without a rollback.
    # Step `done` - 1 was the last of a streak of skipped updates; the step in flight (`position`) is discarded.
    rollbacks += 1
    if rollbacks > config.get("max_rollbacks", MAX_ROLLBACKS):
      raise FloatingPointError(
        f"step {done - 1}: {max_bad_streak} non-finite steps in a row after {rollbacks - 1} "
        "rollbacks; lower the learning rate or check the data"
      )
    state = roll_back(config, workdir, trainer, manager, done - 1, position, writer)
  progress.close()
  return state


def start_epoch(config, trainer: Trainer, state, train_source, epoch: int):
  """`state` after the method's `per_epoch.start` for `epoch` (unless it holds that epoch already: a resume
  mid-epoch), on the features of every training example from the encoder in inference mode."""
  per_epoch = trainer.method.per_epoch
  if per_epoch.started_epoch(jax.device_get(state.model_state)) == epoch:
    return state
  encode = functools.partial(trainer.encode, eval_variables(state, trainer.method))
  features, _ = evaluators.extract_features(
    {"ssl": encode}, train_source, config.eval_batch_size, trainer.batch_sharding, f"features for epoch {epoch}"
  )
  key = jax.random.fold_in(state.rng, epoch)
  params, model_state = per_epoch.start(state.params, state.model_state, features["ssl"], epoch, key)
  return jax.device_put(state.replace(params=params, model_state=model_state), trainer.state_sharding)


def roll_back(config, workdir: str, trainer: Trainer, manager, bad_step: int, next_position: int, writer):
  """The newest checkpoint (or the initial state) with its input moved to `next_position`, past the batches
  whose updates were skipped."""
  manager.wait_until_finished()
  state = restore(config, workdir, trainer, manager) or trainer.make_state(config.seed)
  position = jax.device_put(jnp.asarray(next_position, jnp.int32), trainer.state_sharding.position)
  state = state.replace(position=position)
  logging.warning(
    "steps up to %d skipped non-finite updates; rolled back to step %d, input moved to batch %d",
    bad_step,
    int(state.step),
    next_position,
  )
  writer.write(bad_step, {"rollback_to_step": int(state.step), "rollback_data_position": next_position})
  return state


def evaluate(
  config,
  workdir: str,
  mesh,
  trainer: Trainer,
  state,
  train_source,
  writer=None,
  step=None,
  test_source=None,
  failures: list | None = None,
) -> dict:
  """Runs `config.evals` on the trained model against the baselines of `config.eval_baselines`; at a training
  `step`, only the evaluators due then (`every_steps`), without baselines. `failures`: see `run_evaluators`."""
  encode = trainer.encode
  variables_of = functools.partial(eval_variables, method=trainer.method)
  initial_variables = functools.cache(lambda: variables_of(trainer.make_state(config.seed + 1)))  # A fresh model.
  random_init = functools.cache(
    lambda: baselines_lib.random_init_variables(trainer, initial_variables(), train_source, config.eval_batch_size)
  )
  encoders = {"ssl": lambda: encoder_variables(variables_of(state)), "random_init": random_init}
  baselines = {
    # The method's own featurizer (CPC: its patch grid) on the fair random network.
    "random_init": lambda: functools.partial(encode, replace_encoder(initial_variables(), random_init())),
    "raw_pixels": baselines_lib.raw_pixels,
    "bag_of_tokens": lambda: baselines_lib.bag_of_tokens(config),
  }
  featurizers = {"ssl": functools.partial(encode, variables_of(state))}
  for name in config.eval_baselines if step is None else ():  # Baselines do not change during training.
    featurizers[name] = baselines[require_choice(name, baselines, "config.eval_baselines")]()
  test_source = test_source or data.load_source(config.dataset, config.dataset.test_split, config.get("text"))
  if step is not None and config.get("train_eval_examples"):  # During training: a fixed subset of each split.
    train_source, test_source = (
      data.fixed_subset(s, config.train_eval_examples, config.seed) for s in (train_source, test_source)
    )
  context = evaluators.EvalContext(
    config=config,
    workdir=workdir,
    mesh=mesh,
    batch_sharding=trainer.batch_sharding,
    model=trainer.model,
    method=trainer.method,
    variables=variables_of(state),
    featurizers=featurizers,
    encoders=encoders,
    train_source=train_source,
    test_source=test_source,
    writer=writer,
  )
  return evaluators.run_evaluators(config.evals, context, step, failures)


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
