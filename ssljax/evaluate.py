"""Evaluate a saved run: the latest checkpoint in WORKDIR with the config the run saved there.

  python -m ssljax.evaluate --workdir DIR [--config.evals.knn.ks='(20,)' --config.eval_baselines='()' ...]

Runs the evaluators of the saved config (`config.evals`), with any key overridable as for training; results are
merged into DIR/results.json and printed.
"""

import json
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from ssljax import checkpoint, cli, config_checks, data, experiment, paths, sharding
from ssljax.config import ConfigError
from ssljax.train_step import build_trainer

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory (config.json and checkpoints/).")


def evaluate_workdir(config, workdir: str) -> dict:
  """Restores the newest checkpoint of `workdir` and runs `config.evals` on it; merges into results.json."""
  config_checks.validate(config)
  paths.prepare_workdir(workdir)  # Writable (results.json goes there) before anything runs.
  if not config.get("evals"):
    raise ConfigError("config.evals: the run's config has no evaluators (a train_only run?): nothing to evaluate")
  mesh = sharding.make_mesh(config.get("mesh", sharding.DEFAULT_MESH))
  train_source = data.load_source(config.dataset, config.dataset.train_split, config.get("text"))
  trainer = build_trainer(
    config, mesh, data.num_examples(train_source), train_source.num_classes, data.token_counts(train_source, config)
  )
  manager = checkpoint.make_manager(workdir, read_only=True)
  state = experiment.restore(config, workdir, trainer, manager, read_only=True)
  if state is None:
    raise ConfigError(f"--workdir: {workdir} holds no checkpoint")
  failures = []
  results = experiment.evaluate(config, workdir, mesh, trainer, state, train_source, failures=failures)
  if jax.process_index() == 0:
    path = paths.resolve(workdir) / experiment.RESULTS_FILE
    previous = json.loads(path.read_text()) if path.exists() else {}
    paths.write_atomic(path, json.dumps({**previous, **results}, indent=2, sort_keys=True))
    print(f"step {int(state.step)}")
    if results:
      print(experiment.format_results(results))
  experiment.raise_failures(failures)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.run_command(lambda: evaluate_workdir(flags.FLAGS.config, _WORKDIR.value))


def _define_config_flag(argv):
  """The saved config becomes the default of --config, so that --config.KEY overrides apply to it."""
  workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), None)
  if workdir is None and "--workdir" in argv[:-1]:
    workdir = argv[argv.index("--workdir") + 1]
  if workdir is None:
    print("error: --workdir is required", file=sys.stderr)
    sys.exit(2)
  try:
    config_flags.DEFINE_config_dict(
      "config", experiment.load_config(workdir, validate=False), "The run's config (from WORKDIR)."
    )
  except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  _define_config_flag(sys.argv)
  app.run(main, flags_parser=cli.parse_flags)
