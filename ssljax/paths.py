"""A run's directory, on local disk or in a bucket (`gs://`, `s3://`: where pod runs write).

Every file ssljax writes goes through `etils.epath`, the path API orbax and tfds use, so that a URL workdir is
written to its bucket, never to a local directory named "gs:" that is lost with the machine. A gs:// workdir needs
`pip install 'ssljax[gcs]'` (gcsfs, or tensorflow's tf.io.gfile, for epath; google-cloud-storage for orbax).
"""

import io
import json
import os
import time

import jax
import numpy as np
from etils import epath

from ssljax.config import ConfigError


def is_url(path) -> bool:
  return "://" in str(path)


def resolve(path) -> epath.Path:
  """`path` as an epath.Path: a URL as it is, a local path made absolute (orbax requires it)."""
  return epath.Path(path) if is_url(path) else epath.Path(os.path.abspath(path))


RUN_MARKER = ".ssljax_run"  # Written into every workdir a run creates or adopts: what makes a directory ours.
CONFIG_FILE = "config.json"
_CONFIG_KEYS = {"method", "dataset", "optimizer", "batch_size"}  # What every config.json ssljax writes holds.


def is_run(directory: epath.Path) -> bool:
  """Whether `directory` holds an ssljax run: our marker, or (runs from before the marker) a config.json with the
  keys every ssljax config has."""
  if (directory / RUN_MARKER).exists():
    return True
  try:
    saved = json.loads((directory / CONFIG_FILE).read_text())
  except (OSError, ValueError):
    return False
  return isinstance(saved, dict) and _CONFIG_KEYS <= saved.keys()


def check_run(workdir) -> epath.Path:
  """`workdir` if it holds an ssljax run, else a one-line ConfigError: commands that read a run (evaluate, embed,
  load_encoder) never read or write a directory that is not one."""
  directory = resolve(workdir)
  if not directory.is_dir():
    raise ConfigError(f"--workdir: {directory / CONFIG_FILE} does not exist (not a training run's directory?)")
  if not is_run(directory):
    raise ConfigError(f"--workdir: {workdir!r} is not an ssljax run (no {RUN_MARKER} or {CONFIG_FILE} of ours)")
  return directory


def _foreign_entries(directory: epath.Path) -> list[str]:
  """The names in an existing `directory` that keep it from becoming a run: anything but hidden entries (which
  no file ssljax writes could replace: our only hidden names are the marker and temporary files)."""
  if not directory.exists():
    return []
  return sorted(path.name for path in directory.iterdir() if not path.name.startswith("."))


def prepare_workdir(workdir) -> epath.Path:
  """Creates `workdir` (or takes it if it is empty or an ssljax run's) and proves it writable, before any compute
  is spent; `mark_run` then marks it before the run writes its first file. A directory holding anything else is
  refused with one line before anything is written there (checkpoints set aside, config.json and results.json
  replaced, metrics.jsonl appended to: a run in someone's folder would do all of that)."""
  missing = f"--workdir: {workdir!r} needs the libraries of its filesystem (pip install 'ssljax[gcs]' for gs://)"
  if str(workdir).startswith("gs://"):
    try:
      import google.cloud.storage  # noqa: F401 - orbax reads the bucket's settings with it.
    except ImportError:
      raise ConfigError(missing) from None
  try:
    directory = resolve(workdir)
    if not is_run(directory) and (foreign := _foreign_entries(directory)):
      shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
      raise ConfigError(
        f"--workdir: {workdir!r} holds {shown} but no ssljax run ({RUN_MARKER}): choose a new or empty directory"
        " (nothing was written there)"
      )
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except ImportError:  # epath's remote backends import their filesystem library (gcsfs, s3fs) on first use.
    raise ConfigError(missing) from None
  except (OSError, NotImplementedError) as error:
    raise ConfigError(f"--workdir: {workdir!r} is not writable ({getattr(error, 'strerror', None) or error})") from None
  return directory


def mark_run(workdir):
  """Marks `workdir` as an ssljax run (once, by process 0), before the run's first file is written there."""
  marker = resolve(workdir) / RUN_MARKER
  if jax.process_index() == 0 and not marker.exists():
    write_atomic(marker, json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))


def write_atomic(file: epath.Path, content: str | bytes):
  """Writes `file` whole or not at all: readers (and a crash) see the old file or the new one, never half of it."""
  temporary = file.parent / f".{file.name}.tmp"
  if isinstance(content, bytes):
    temporary.write_bytes(content)
  else:
    temporary.write_text(content)
  temporary.replace(file)


def write_png(file: epath.Path, image: np.ndarray):
  """uint8 [H, W, C] (C = 1 or 3) or [H, W] to a PNG file."""
  from PIL import Image

  encoded = io.BytesIO()
  Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(encoded, format="PNG")
  write_atomic(file, encoded.getvalue())
