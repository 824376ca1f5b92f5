"""Optimizers and learning-rate schedules from the config.

`config.optimizer`: name ('lars' | 'sgd' | 'adamw'), base_lr, lr_scaling ('linear': base_lr * B / 256, 'sqrt':
base_lr * sqrt(B), 'none'), weight_decay, warmup_steps or warmup_epochs (converted with the run's batch size, so
that `--config.batch_size` keeps the warmup's length in epochs) and, per optimizer, momentum / b1, b2.
Biases and normalisation parameters (every parameter with fewer than two dimensions) are excluded from weight
decay and from LARS's trust ratio, as in SimCLR, unless `decay_norm_and_bias`; `no_decay` names more (e.g. MAE
fine-tuning's "cls_token").
`schedule`: "cosine" (after the warmup, the default; it ends at `end_lr_ratio` x the peak, 0 unless set: Barlow
Twins', VICReg's and SwAV's end at 0.001), "constant", "steps" (x 0.1 at each of `decay_epochs`), or
"linear_decay" (constant until `decay_start_epoch`, then linearly to 0 at the last step: CycleGAN's).
`norm_and_bias_base_lr` gives biases and normalisation parameters their own base learning rate (Barlow Twins'
LARS: 0.2 for the weights, 0.0048 for them).
`layer_decay` < 1 scales a ViT's learning rate by layer_decay^(L + 1 - layer) (BEiT/MAE layer-wise decay).
"""

import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp
import optax

from ssljax.config import ConfigError, require_choice


def scaled_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
  """The peak learning rate for a global batch: SimCLR's linear (B/256) or square-root (sqrt B) scaling."""
  if scaling == "linear":
    return base_lr * batch_size / 256
  if scaling == "sqrt":
    return base_lr * math.sqrt(batch_size)
  if scaling == "none":
    return base_lr
  raise ConfigError(f"config.optimizer.lr_scaling: unknown scaling {scaling!r} (linear, sqrt, none)")


def _path_names(path) -> list[str]:
  return [str(getattr(key, "key", key)) for key in path]


def decay_mask(params, no_decay=(), decay_norm_and_bias: bool = False):
  """True for parameters that get weight decay and LARS adaptation: kernels, not biases or norm scales (unless
  `decay_norm_and_bias`: the references that hand every parameter to SGD / AdamW, MoCo v2, SimSiam, MoCo v3's
  ViT), not the online probe (SimCLR's code excludes its supervised head from both), and not parameters whose
  path contains a name in `no_decay`."""
  excluded = {"probe", *no_decay}

  def decayed(path, p):
    return (p.ndim > 1 or decay_norm_and_bias) and not set(_path_names(path)) & excluded

  return jax.tree_util.tree_map_with_path(decayed, params)


def layerwise_lr_scales(params, layer_decay: float):
  """Per-parameter learning-rate multipliers of a ViT, as in MAE's fine-tuning (after BEiT): the patch
  embedding, class token and position embedding are layer 0, block i is layer i + 1, everything after the blocks
  (norms, head) is layer L + 1 for L blocks; layer l gets layer_decay ** (L + 1 - l)."""

  def layer(path):
    names = _path_names(path)
    block = [int(m.group(1)) for m in map(re.compile(r"blocks_(\d+)$").match, names) if m]
    if block:
      return block[0] + 1
    return 0 if {"patch_embed", "cls_token", "pos_embed", "cls_pos_embed"} & set(names) else None  # None: after.

  layers = jax.tree_util.tree_map_with_path(lambda path, _: layer(path), params)
  block_layers = [x for x in jax.tree.leaves(layers) if x is not None]
  if not block_layers or max(block_layers) == 0:
    raise ConfigError("config.optimizer.layer_decay: needs a model with transformer blocks (a ViT)")
  last = max(block_layers) + 1
  return jax.tree.map(lambda x: layer_decay ** (last - (last if x is None else x)), layers, is_leaf=lambda x: x is None)


def make_optimizer(config, batch_size: int, total_steps: int, groups: dict | None = None, steps_per_epoch: float = 1.0):
  """Returns (optax transformation, learning-rate schedule) for `config.optimizer`.

  `groups` ({name: overrides of config.optimizer}, from the method) gives the parameters whose path contains
  `name` their own optimizer (optax.multi_transform), e.g. {"predictor": {"schedule": "constant"}}: SimSiam's
  predictor keeps the peak learning rate while the rest follows warmup + cosine. With
  `config.optimizer.norm_and_bias_base_lr` the other parameters with fewer than two dimensions form one more
  group at that base learning rate (Barlow Twins')."""
  tx, schedule = _single_optimizer(dict(config.optimizer), batch_size, total_steps, steps_per_epoch)
  groups = dict(groups or {})
  norm_and_bias_lr = config.optimizer.get("norm_and_bias_base_lr")
  if not groups and norm_and_bias_lr is None:
    return tx, schedule
  transforms = {"default": tx}
  for name, overrides in groups.items():
    optimizer = {**dict(config.optimizer), **overrides}
    transforms[name] = _single_optimizer(optimizer, batch_size, total_steps, steps_per_epoch)[0]
  if norm_and_bias_lr is not None:
    optimizer = {**dict(config.optimizer), "base_lr": norm_and_bias_lr}
    transforms[NORM_AND_BIAS] = _single_optimizer(optimizer, batch_size, total_steps, steps_per_epoch)[0]

  def labels(params):
    def label(path, p):
      names = set(_path_names(path))
      default = NORM_AND_BIAS if norm_and_bias_lr is not None and p.ndim < 2 else "default"
      return next((name for name in groups if name in names), default)

    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform(transforms, labels), schedule


@dataclasses.dataclass(frozen=True)
class PlayerOptimizers:
  """The optimizers of a multi-player method (`ssljax.methods.Player`): each player's optax transformation over
  its own parameter subtree. The optimizer state is {player name: its transformation's state}, so that one
  player's update leaves the others' moments and counts untouched."""

  optimizers: dict  # player name -> (parameter subtree, optax transformation)

  def init(self, params):
    return {name: tx.init(params[subtree]) for name, (subtree, tx) in self.optimizers.items()}


def make_player_optimizers(config, players, batch_size: int, total_steps: int, steps_per_epoch: float = 1.0):
  """(PlayerOptimizers, the learning-rate schedule by step): `config.optimizer` for each player, its schedule read
  at the step (a player with k updates per step counts k per step: warmup and decay keep their length in steps)."""
  optimizers = {}
  for player in players:
    tx, schedule = _single_optimizer(dict(config.optimizer), batch_size, total_steps, steps_per_epoch, player.updates)
    optimizers[player.name] = (player.subtree, tx)
  return PlayerOptimizers(optimizers), schedule


NORM_AND_BIAS = "norm_and_bias"  # The group of `config.optimizer.norm_and_bias_base_lr`.
SCHEDULES = ("cosine", "constant", "steps", "linear_decay")


def step_decay_schedule(peak: float, warmup: int, decay_steps, factor: float = 0.1):
  """A linear warmup to `peak` over `warmup` steps, then `peak` times `factor` for every boundary in `decay_steps`
  (step counts from the start of the run) already passed: MoCo's linear classifier, lr x 0.1 at epochs 60 and 80."""
  boundaries = jnp.asarray(sorted(decay_steps), jnp.float32).reshape(-1)

  def schedule(step):
    decayed = peak * factor ** jnp.sum(step >= boundaries)
    return jnp.where(step < warmup, peak * step / max(warmup, 1), decayed)

  return schedule


def linear_decay_schedule(peak: float, decay_start: int, total_steps: int):
  """`peak` until step `decay_start`, then linearly to 0 at `total_steps` (a run shorter than `decay_start` stays at
  `peak`): CycleGAN's "linear" policy (100 epochs at the base rate, 100 decaying), here by step rather than by
  epoch (the authors' rate is held for each epoch and ends at peak / 101, not 0)."""
  decay_steps = max(total_steps - decay_start, 1)

  def schedule(step):
    decayed = peak * jnp.clip((total_steps - step) / decay_steps, 0.0, 1.0)
    return jnp.where(step < decay_start, peak, decayed)

  return schedule


def lars(schedule, weight_decay: float, mask, trust_coefficient: float, momentum: float, lr_after_momentum: bool):
  """LARS (You et al. 2017): the decayed gradient g + wd p of each masked parameter scaled by its trust ratio
  eta ||p|| / ||g + wd p|| (1 where either norm is 0), then momentum and the learning rate. SimCLR's LARS (and
  optax.lars) puts the learning rate inside the momentum buffer, v = m v + lr u; BYOL's, MoCo v3's, MAE's and
  apex's (SimSiam's linear evaluation) apply it after, p -= lr (m v + u) (`lr_after_momentum`), which differs
  whenever the learning rate changes (warmup, decay)."""
  steps = [
    optax.add_decayed_weights(weight_decay, mask=mask),
    optax.masked(optax.scale_by_trust_ratio(trust_coefficient=trust_coefficient), mask),
  ]
  if lr_after_momentum:
    steps += [optax.trace(decay=momentum), optax.scale_by_learning_rate(schedule)]
  else:
    steps += [optax.scale_by_learning_rate(schedule), optax.trace(decay=momentum)]
  return optax.chain(*steps)


def warmup_steps(opt: dict, steps_per_epoch: float) -> int:
  """The warmup length in steps: `warmup_steps`, or `warmup_epochs` x steps per epoch (rounded)."""
  return opt["warmup_steps"] or int(round(opt.get("warmup_epochs", 0) * steps_per_epoch))


def _single_optimizer(opt: dict, batch_size: int, total_steps: int, steps_per_epoch: float, updates_per_step: int = 1):
  """One optax transformation and its learning-rate schedule (by step) for the optimizer settings `opt`; with
  `updates_per_step` = k the transformation's own count (k per step) is read back as steps."""
  peak = scaled_learning_rate(opt["base_lr"], batch_size, opt["lr_scaling"])
  mask = functools.partial(
    decay_mask, no_decay=tuple(opt.get("no_decay", ())), decay_norm_and_bias=opt.get("decay_norm_and_bias", False)
  )
  warmup = min(warmup_steps(opt, steps_per_epoch), total_steps)
  kind = require_choice(opt.get("schedule", "cosine"), SCHEDULES, "config.optimizer.schedule")
  if kind == "constant":
    schedule = optax.constant_schedule(peak)
  elif kind == "steps":
    schedule = step_decay_schedule(peak, warmup, [e * steps_per_epoch for e in opt.get("decay_epochs", ())])
  elif kind == "linear_decay":
    schedule = linear_decay_schedule(peak, round(opt["decay_start_epoch"] * steps_per_epoch), total_steps)
  else:
    end = peak * opt.get("end_lr_ratio", 0.0)
    schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), end_value=end)
  by_update = schedule if updates_per_step == 1 else lambda count: schedule(count // updates_per_step)
  if opt["name"] == "lars":
    tx = lars(
      by_update,
      opt["weight_decay"],
      mask,
      opt.get("trust_coefficient", 0.001),
      opt.get("momentum", 0.9),
      opt.get("lr_after_momentum", False),
    )
  elif opt["name"] == "sgd":  # SimCLR's fine-tuning optimizer: (Nesterov) momentum, decay only if asked for.
    tx = optax.chain(
      optax.add_decayed_weights(opt["weight_decay"], mask=mask),
      optax.sgd(by_update, momentum=opt.get("momentum", 0.9), nesterov=opt.get("nesterov", True)),
    )
  elif opt["name"] == "adamw":
    tx = optax.adamw(
      by_update,
      b1=opt.get("b1", 0.9),
      b2=opt.get("b2", 0.999),
      eps=opt.get("eps", 1e-8),
      weight_decay=opt["weight_decay"],
      mask=mask,
    )
  else:
    raise ConfigError(f"config.optimizer.name: unknown optimizer {opt['name']!r} (lars, sgd, adamw)")
  if opt.get("layer_decay", 1.0) != 1.0:
    # Scaling the whole update equals scaling the group's learning rate: AdamW's decay term is inside lr too.
    layer_decay = opt["layer_decay"]
    tx = optax.chain(
      tx,
      optax.stateless(
        lambda updates, params: jax.tree.map(jnp.multiply, updates, layerwise_lr_scales(params, layer_decay))
      ),
    )
  return tx, schedule
