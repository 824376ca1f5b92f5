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


def _counts(source, batch_size: int, batch_sharding) -> tuple[np.ndarray, np.ndarray]:
  """(int64 [H, W, C, 256]: how often each value occurs at each position over `source`, int64 [num_classes]: how
  often each label does)."""
  counts, labels = 0, 0
  for batch, valid in data.eval_batches(source, batch_size, batch_sharding):
    values = np.asarray(quantize(batch["image"]))[:valid]
    cells = np.arange(values[0].size).reshape(values.shape[1:]) * LEVELS + values  # Position-major.
    counts = counts + np.bincount(cells.ravel(), minlength=values[0].size * LEVELS)
    known = np.asarray(batch["label"])[:valid]
    labels = labels + np.bincount(known[known >= 0], minlength=max(source.num_classes, 1))
  return counts.reshape(*values.shape[1:], LEVELS), labels


def run(context) -> dict:
  """{"likelihood/ssl/bits_per_dim", "likelihood/uniform/bits_per_dim", "likelihood/independent_pixels/..."}.

  A class-conditional model: "ssl" is its marginal log p(x) = log sum_y p(x | y) p(y) (p(y): the training split's
  class frequencies; one pass per class), comparable with the unconditional baselines, and "ssl_given_label" is
  log p(x | its label). A super-resolution model reports only "ssl_given_low_res", log p(x | x downsampled): it is
  told part of the image, so no baseline here is its match."""
  config = context.config
  if config.method != "pixelcnn":
    raise ConfigError(f"config.evals: the likelihood evaluator needs method 'pixelcnn', not {config.method!r}")
  conditional, factor = config.pixelcnn.conditional, config.pixelcnn.super_resolution
  num_classes = context.train_source.num_classes if conditional else 1

  @jax.jit
  def image_nll(variables, images, labels):
    """[N]: each image's summed NLL (nats) under `labels` (ignored by an unconditional model)."""
    values = quantize(images)
    logits = context.model.apply(variables, values, labels, low_res_of(values, factor), method="pixel_logits")
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, values), axis=(1, 2, 3))

  train_counts, train_labels = _counts(context.train_source, config.eval_batch_size, context.batch_sharding)
  test_counts, _ = _counts(context.test_source, config.eval_batch_size, context.batch_sharding)
  log_prior = np.log(np.maximum(train_labels[:num_classes], 1e-12) / max(train_labels[:num_classes].sum(), 1))
  given_label = marginal = 0.0
  for batch, valid in data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding):
    labels = np.asarray(batch["label"])[:valid]
    if conditional:  # [K, N]: -log p(x | y) for every class y.
      per_class = np.stack(
        [
          np.asarray(image_nll(context.variables, batch["image"], jnp.full_like(batch["label"], y)))
          for y in range(num_classes)
        ]
      )[:, :valid]
      given_label += float(per_class[labels, np.arange(valid)].sum())
      joint = log_prior[:, None] - per_class
      top = joint.max(0)
      marginal += float(-(top + np.log(np.exp(joint - top).sum(0))).sum())
    else:
      marginal += float(np.asarray(image_nll(context.variables, batch["image"], batch["label"]))[:valid].sum())
  dims = test_counts.sum()
  independent = min(
    -np.sum(test_counts * np.log((train_counts + alpha) / (train_counts.sum(-1, keepdims=True) + LEVELS * alpha)))
    for alpha in SMOOTHING
  )
  bits = 1 / (dims * np.log(2.0))
  results = {
    "likelihood/uniform/bits_per_dim": 8.0,
    "likelihood/independent_pixels/bits_per_dim": float(independent * bits),
  }
  if factor:
    results["likelihood/ssl_given_low_res/bits_per_dim"] = marginal * bits
  else:
    results["likelihood/ssl/bits_per_dim"] = marginal * bits
  if conditional and not factor:
    results["likelihood/ssl_given_label/bits_per_dim"] = given_label * bits
  return results
