"""Scalars to `WORKDIR/metrics.jsonl` (one JSON object per line) and TensorBoard, images to TensorBoard, from
process 0 only, through the path API (`ssljax.paths`).

A local metrics.jsonl is appended line by line. A bucket's objects cannot be appended to, so there the file is
rewritten whole at most every `REMOTE_FLUSH_SECONDS` and at `close` (a preemption closes the writer too).
TensorBoard's event files go through epath as well; in a bucket they become visible when the filesystem library
uploads them (tf.io.gfile at each flush, fsspec at close).
"""

import json
import time

import jax
from etils import epath
from tensorboardX import SummaryWriter, record_writer

from ssljax import paths

REMOTE_FLUSH_SECONDS = 30.0


class _EpathEventFiles:
  """tensorboardX's writer factory for URL logdirs (it has its own only for s3 and, with google-cloud-storage, gs)."""

  def open(self, path):
    return epath.Path(path).open("wb")

  def directory_check(self, path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


for _scheme in ("gs", "s3", "az"):  # epath's remote schemes.
  record_writer.register_writer_factory(_scheme, _EpathEventFiles())


class MetricWriter:
  def __init__(self, workdir: str):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    directory = paths.resolve(workdir)
    self._path = directory / "metrics.jsonl"
    self._remote = paths.is_url(workdir)
    if self._remote:
      self._lines = self._path.read_text().splitlines(keepends=True) if self._path.exists() else []
      self._flushed_at = time.monotonic()
    else:
      self._jsonl = self._path.open("a")
    self._tensorboard = SummaryWriter(str(directory / "tensorboard"))

  def write(self, step: int, scalars: dict):
    if not self._active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    line = json.dumps({"step": int(step), **scalars}) + "\n"
    if self._remote:
      self._lines.append(line)
      if time.monotonic() - self._flushed_at > REMOTE_FLUSH_SECONDS:
        self._flush_remote()
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)

  def _flush_remote(self):
    paths.write_atomic(self._path, "".join(self._lines))
    self._flushed_at = time.monotonic()

  def write_image(self, step: int, name: str, image):
    """uint8 [H, W, C] to TensorBoard."""
    if self._active:
      self._tensorboard.add_image(name, image, step, dataformats="HWC")

  def close(self):
    if self._active:
      if self._remote:
        self._flush_remote()
      else:
        self._jsonl.close()
      self._tensorboard.close()
