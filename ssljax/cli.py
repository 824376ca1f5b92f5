"""What the commands share: one-line errors for bad flags and configs, and the CPU device count."""

import os
import sys

import jax
from absl import flags, logging

from ssljax.config import ConfigError

_CPU_DEVICES = flags.DEFINE_integer(
  "cpu_devices",
  8,
  "Virtual devices the CPU backend is split into (no effect on GPU/TPU); 8 runs ~2x faster than 1 on 2 cores.",
)


def parse_flags(argv):
  """absl flag parsing with a one-line error for unknown flags and config keys (`--config.no_such_key`)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    print(f"error: {error}", file=sys.stderr)
  except (AttributeError, KeyError) as error:  # ml_collections: an override of a key the config does not have.
    print(f"error: --config: unknown config key {str(error.args[0]).strip(chr(34))}", file=sys.stderr)
  sys.exit(2)


def run_command(command):
  """Calls `command()` after setting up logging and CPU devices; a ConfigError (or a config file that cannot be
  read) ends the process with one line on stderr and status 2."""
  logging.set_verbosity(logging.WARNING)
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  try:
    command()
  except OSError as error:  # The config file could not be loaded.
    print(f"error: --config: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(2)
  except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
