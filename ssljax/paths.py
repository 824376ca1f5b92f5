"""A run's directory, on local disk or in a bucket (`gs://`, `s3://`: where pod runs write).

Every file ssljax writes goes through `etils.epath`, the path API orbax and tfds use, so that a URL workdir is
written to its bucket, never to a local directory named "gs:" that is lost with the machine. A gs:// workdir needs
`pip install 'ssljax[gcs]'` (gcsfs, or tensorflow's tf.io.gfile, for epath; google-cloud-storage for orbax).
"""

import io
import os

import jax
import numpy as np
from etils import epath

from ssljax.config import ConfigError


def is_url(path) -> bool:
  return "://" in str(path)


def resolve(path) -> epath.Path:
  """`path` as an epath.Path: a URL as it is, a local path made absolute (orbax requires it)."""
  return epath.Path(path) if is_url(path) else epath.Path(os.path.abspath(path))


def prepare_workdir(workdir) -> epath.Path:
  """Creates `workdir` and proves it writable before any compute is spent."""
  missing = f"--workdir: {workdir!r} needs the libraries of its filesystem (pip install 'ssljax[gcs]' for gs://)"
  if str(workdir).startswith("gs://"):
    try:
      import google.cloud.storage  # noqa: F401 - orbax reads the bucket's settings with it.
    except ImportError:
      raise ConfigError(missing) from None
  try:
    directory = resolve(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except ImportError:  # epath's remote backends import their filesystem library (gcsfs, s3fs) on first use.
    raise ConfigError(missing) from None
  except (OSError, NotImplementedError) as error:
    raise ConfigError(f"--workdir: {workdir!r} is not writable ({getattr(error, 'strerror', None) or error})") from None
  return directory


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
