"""Scalars to `WORKDIR/metrics.jsonl` (one JSON object per line) and TensorBoard, images to TensorBoard, from
process 0 only."""

import json
import os

import jax


class MetricWriter:
  def __init__(self, workdir: str):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    from tensorboardX import SummaryWriter

    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict):
    if not self._active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)

  def write_image(self, step: int, name: str, image):
    """uint8 [H, W, C] to TensorBoard."""
    if self._active:
      self._tensorboard.add_image(name, image, step, dataformats="HWC")

  def close(self):
    if self._active:
      self._jsonl.close()
      self._tensorboard.close()
