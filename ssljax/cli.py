"""What the commands share: one-line errors for bad flags and configs, the CPU device count, and joining a
multi-process run (`jax.distributed`)."""

import os
import re
import sys

import jax
from absl import flags, logging
from tqdm import tqdm

from ssljax.config import ConfigError

_CPU_DEVICES = flags.DEFINE_integer(
  "cpu_devices",
  8,
  "Virtual devices the CPU backend is split into (no effect on GPU/TPU); 8 runs ~2x faster than 1 on 2 cores.",
  lower_bound=1,
)
_MULTIHOST = flags.DEFINE_bool(
  "multihost",
  False,
  "Join a multi-process run with jax.distributed.initialize(): on a TPU pod or under SLURM the coordinator and "
  "process ids are detected; elsewhere give --coordinator_address, --num_processes and --process_id.",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies --multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def parse_flags(argv, flag_values=flags.FLAGS):
  """absl flag parsing with one-line errors for unknown flags, unknown config keys (`--config.no_such_key`),
  values that do not parse (`--config.batch_size=abc`) and config files that cannot be loaded."""
  _importable_configs(_argument(argv, "--config"))
  try:
    remaining = flag_values(argv)
    if "config" in flag_values:
      flag_values["config"].value.keys()  # A config file that failed to load raises here, not mid-run.
    return remaining
  except flags.UnrecognizedFlagError as error:
    print(f"error: unknown flag --{error.flagname}", file=sys.stderr)
  except flags.Error as error:
    print(f"error: {error}", file=sys.stderr)
  except (AttributeError, KeyError) as error:  # ml_collections: an override of a key the config does not have.
    message = str(error.args[0])
    key = re.search(r"(\w+)", message).group(1)
    override = next((a.split("=")[0] for a in argv if a.startswith("--config.") and a.split("=")[0].endswith(key)), key)
    suggestion = re.search(r'Did you mean "(\w+)"', message)
    hint = f" (did you mean {suggestion.group(1)}?)" if suggestion else ""
    print(f"error: {override}: unknown config key{hint}", file=sys.stderr)
  except Exception as error:  # noqa: BLE001 - the config file did not load: missing, or it raised.
    path = _argument(argv, "--config").split(":")[0]
    reason = "no such file" if not os.path.exists(path) else " ".join(str(error).split()[-12:])
    print(f"error: --config: cannot load {path} ({reason})", file=sys.stderr)
  sys.exit(2)


def _importable_configs(config_arg: str):
  """Config files import their siblings as `configs.NAME` (e.g. byol_digits builds on simclr_digits): put the
  directory holding the config's `configs/` package on the path, so a config loads from any working directory."""
  folder = os.path.dirname(os.path.abspath(config_arg.split(":")[0]))
  if os.path.basename(folder) == "configs" and os.path.isfile(os.path.join(folder, "__init__.py")):
    root = os.path.dirname(folder)
    if root not in sys.path:
      sys.path.insert(0, root)


def _argument(argv, name: str) -> str:
  """The value given to flag `name` as `name=value` or `name value`."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"{name}="):
      return arg.split("=", 1)[1]
    if arg == name and i + 1 < len(argv):
      return argv[i + 1]
  return "?"


def run_command(command):
  """Calls `command()` after setting up logging and CPU devices; a ConfigError (or a config file that cannot be
  read) ends the process with one line on stderr and status 2."""
  logging.set_verbosity(logging.WARNING)
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  if _MULTIHOST.value or _COORDINATOR.value:
    # Every process runs the same program on its own devices; collectives and orbax span all of them, and only
    # process 0 logs, writes metrics and shows progress.
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    command()
  except OSError as error:  # A file the run needs (e.g. a tfds data_dir) cannot be read.
    print_error(" ".join(str(error).split()))
    sys.exit(2)
  except ConfigError as error:
    print_error(str(error))
    sys.exit(2)


def print_error(message: str):
  """`error: message` as the last line on stderr, on its own: a progress bar still showing is closed first (left as
  it stood), and what would break the line (a file name holding a newline, say) is escaped as Python writes it."""
  for bar in list(tqdm._instances):  # noqa: SLF001 - tqdm's registry of open bars; it has no public "close all".
    bar.close()
  one_line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
  print(f"error: {one_line}", file=sys.stderr, flush=True)
