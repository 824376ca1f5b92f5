"""Optimizers and learning-rate schedules from the config.

`config.optimizer`: name ('lars' | 'adamw'), base_lr, lr_scaling ('linear': base_lr * B / 256, 'sqrt':
base_lr * sqrt(B), 'none'), weight_decay, warmup_steps and, per optimizer, momentum / b1, b2.
Biases and normalisation parameters (every parameter with fewer than two dimensions) are excluded from weight
decay and from LARS's trust ratio, as in SimCLR.
"""

import math

import jax
import optax

from ssljax.config import ConfigError


def scaled_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
  """The peak learning rate for a global batch: SimCLR's linear (B/256) or square-root (sqrt B) scaling."""
  if scaling == "linear":
    return base_lr * batch_size / 256
  if scaling == "sqrt":
    return base_lr * math.sqrt(batch_size)
  if scaling == "none":
    return base_lr
  raise ConfigError(f"config.optimizer.lr_scaling: unknown scaling {scaling!r} (linear, sqrt, none)")


def decay_mask(params):
  """True for parameters that get weight decay and LARS adaptation: kernels, not biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config, batch_size: int, total_steps: int):
  """Returns (optax transformation, learning-rate schedule) for `config.optimizer`."""
  opt = config.optimizer
  peak = scaled_learning_rate(opt.base_lr, batch_size, opt.lr_scaling)
  warmup = min(opt.warmup_steps, total_steps)
  schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), end_value=0.0)
  if opt.name == "lars":
    tx = optax.lars(
      schedule,
      weight_decay=opt.weight_decay,
      weight_decay_mask=decay_mask,
      trust_coefficient=opt.get("trust_coefficient", 0.001),
      trust_ratio_mask=decay_mask,
      momentum=opt.get("momentum", 0.9),
    )
  elif opt.name == "adamw":
    tx = optax.adamw(
      schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999), weight_decay=opt.weight_decay, mask=decay_mask
    )
  else:
    raise ConfigError(f"config.optimizer.name: unknown optimizer {opt.name!r} (lars, adamw)")
  return tx, schedule
