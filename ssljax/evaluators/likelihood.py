"""An autoregressive model's held-out negative log-likelihood in bits per sub-pixel (PixelCNN), against the
uniform distribution (8 bits) and a per-pixel independent model fitted to the training split: a categorical
distribution over the 256 values at each position and channel, add-alpha smoothed, alpha chosen as the best of a
grid on the test split itself (the baseline's most favourable smoothing). A class-conditional model is scored on
log p(x | its label), a super-resolution model on log p(x | x downsampled)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax import data
from ssljax.config import ConfigError
from ssljax.methods.pixelcnn import low_res_of, quantize
from ssljax.models.pixelcnn import LEVELS

SMOOTHING = (1e-3, 1e-2, 0.1, 1.0)  # Pseudo-counts per value tried for the independent model.


def _counts(source, batch_size: int, batch_sharding) -> np.ndarray:
  """int64 [H, W, C, 256]: how often each value occurs at each position over `source`."""
  counts = 0
  for batch, valid in data.eval_batches(source, batch_size, batch_sharding):
    values = np.asarray(quantize(batch["image"]))[:valid]
    cells = np.arange(values[0].size).reshape(values.shape[1:]) * LEVELS + values  # Position-major.
    counts = counts + np.bincount(cells.ravel(), minlength=values[0].size * LEVELS)
  return counts.reshape(*values.shape[1:], LEVELS)


def run(context) -> dict:
  """{"likelihood/ssl/bits_per_dim", "likelihood/uniform/bits_per_dim", "likelihood/independent_pixels/..."}."""
  config = context.config
  if config.method != "pixelcnn":
    raise ConfigError(f"config.evals: the likelihood evaluator needs method 'pixelcnn', not {config.method!r}")

  @jax.jit
  def summed_nll(variables, images, labels, valid):
    values = quantize(images)
    low_res = low_res_of(values, config.pixelcnn.super_resolution)
    logits = context.model.apply(variables, values, labels, low_res, method="pixel_logits")
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, values)
    return jnp.sum(nll * (jnp.arange(images.shape[0]) < valid)[:, None, None, None])

  train_counts = _counts(context.train_source, config.eval_batch_size, context.batch_sharding)
  test_counts = _counts(context.test_source, config.eval_batch_size, context.batch_sharding)
  total = 0.0
  for batch, valid in data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding):
    total += float(summed_nll(context.variables, batch["image"], batch["label"], valid))
  dims = test_counts.sum()
  independent = min(
    -np.sum(test_counts * np.log((train_counts + alpha) / (train_counts.sum(-1, keepdims=True) + LEVELS * alpha)))
    for alpha in SMOOTHING
  )
  bits = 1 / (dims * np.log(2.0))
  return {
    "likelihood/ssl/bits_per_dim": total * bits,
    "likelihood/uniform/bits_per_dim": 8.0,
    "likelihood/independent_pixels/bits_per_dim": float(independent * bits),
  }
