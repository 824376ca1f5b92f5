"""Pretrain a self-supervised method, then evaluate its features.

  python -m ssljax.train --config configs/simclr_digits.py[:arg] [--config.key=value ...] --workdir DIR

Writes DIR/config.json, DIR/metrics.jsonl, DIR/tensorboard/, DIR/checkpoints/ (re-launching with the same DIR
resumes from the latest one) and DIR/results.json.
"""

from absl import app, flags
from ml_collections import config_flags

from ssljax import cli, experiment
from ssljax.config import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file, optionally with ':arg'.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")

  def command():
    if _CONFIG.value is None or _WORKDIR.value is None:
      raise ConfigError("--config and --workdir are required")
    experiment.train_and_evaluate(_CONFIG.value, _WORKDIR.value)

  cli.run_command(command)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
