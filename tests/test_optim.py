"""Learning-rate scaling, warmup + cosine schedule, and LARS exclusions."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ssljax import optim
from ssljax.config import ConfigError


def _config(**overrides):
  opt = dict(name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6, warmup_steps=10, momentum=0.9)
  return ml_collections.ConfigDict(dict(optimizer={**opt, **overrides}))


def test_learning_rate_scaling_rules():
  assert optim.scaled_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)  # SimCLR: 0.3 x B/256.
  assert optim.scaled_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)  # SimCLR: 0.075 x sqrt(B).
  with pytest.raises(ConfigError, match="config.optimizer.lr_scaling"):
    optim.scaled_learning_rate(0.1, 256, "cubic")


def test_warmup_then_cosine():
  _, schedule = optim.make_optimizer(_config(), batch_size=512, total_steps=110)
  peak = 0.6
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0.0, peak / 2, peak], rtol=1e-6)
  np.testing.assert_allclose(schedule(60), peak * 0.5 * (1 + np.cos(np.pi * 50 / 100)), rtol=1e-5)
  np.testing.assert_allclose(schedule(110), 0.0, atol=1e-7)


def test_lars_excludes_biases_and_norm_parameters():
  params = {"kernel": jnp.full((4, 4), 2.0), "bias": jnp.full((4,), 2.0)}
  grads = {"kernel": jnp.full((4, 4), 0.5), "bias": jnp.full((4,), 0.5)}
  tx, _ = optim.make_optimizer(_config(weight_decay=0.1, warmup_steps=0), batch_size=256, total_steps=1000)
  updates, _ = tx.update(grads, tx.init(params), params)
  lr = 0.3
  # Kernel: trust ratio 0.001 * |w| / |g + wd w| with weight decay; bias: plain momentum SGD step -lr * g.
  g = 0.5 + 0.1 * 2.0
  np.testing.assert_allclose(updates["kernel"], -lr * 0.001 * (2.0 * 4) / (g * 4) * g, rtol=1e-5)
  np.testing.assert_allclose(updates["bias"], -lr * 0.5, rtol=1e-5)
  # The online probe's kernel, like SimCLR's supervised head, gets neither weight decay nor trust scaling.
  probe = {"probe": {"kernel": params["kernel"]}}
  updates, _ = tx.update({"probe": {"kernel": grads["kernel"]}}, tx.init(probe), probe)
  np.testing.assert_allclose(updates["probe"]["kernel"], -lr * 0.5, rtol=1e-5)


def test_adamw_masks_weight_decay():
  params = {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))}
  zeros = {"kernel": jnp.zeros((3, 3)), "bias": jnp.zeros((3,))}
  tx, _ = optim.make_optimizer(_config(name="adamw", weight_decay=0.5, warmup_steps=0, lr_scaling="none"), 256, 100)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.3 * 0.5, rtol=1e-5)  # Decoupled decay only.
  np.testing.assert_allclose(updates["bias"], 0.0)
  assert isinstance(tx, optax.GradientTransformation)


def test_unknown_optimizer_is_a_named_error():
  with pytest.raises(ConfigError, match="config.optimizer.name: unknown optimizer 'sgdx'"):
    optim.make_optimizer(_config(name="sgdx"), 256, 10)


def test_warmup_in_epochs_follows_the_batch_size():
  """`warmup_epochs` is converted with the run's batch size: --config.batch_size=1024 halves the steps of a
  10-epoch warmup that 512 makes 970 (SimCLR CIFAR-10); warmup_steps stays a step count."""
  from configs import simclr_digits
  from ssljax import config_checks

  assert optim.warmup_steps({"warmup_steps": 0, "warmup_epochs": 10}, 50_000 / 512) == 977
  assert optim.warmup_steps({"warmup_steps": 0, "warmup_epochs": 10}, 50_000 / 1024) == 488
  assert optim.warmup_steps({"warmup_steps": 50, "warmup_epochs": 0}, 97.6) == 50
  config = simclr_digits.get_config("runlocal")
  config.optimizer.update(warmup_steps=0, warmup_epochs=2)
  for batch_size in (32, 64):
    num_steps = 4 * 256 // batch_size
    schedule = optim.make_optimizer(config, batch_size, num_steps, steps_per_epoch=256 / batch_size)[1]
    peak = optim.scaled_learning_rate(config.optimizer.base_lr, batch_size, "linear")
    warmup = 2 * 256 // batch_size  # 16 steps at batch 32, 8 at 64.
    np.testing.assert_allclose([schedule(warmup // 2), schedule(warmup)], [peak / 2, peak], rtol=1e-6)
  config.optimizer.warmup_steps = 5
  with pytest.raises(ConfigError, match="warmup_epochs: 2 and warmup_steps 5 are both set"):
    config_checks.validate(config)


def test_lars_learning_rate_inside_or_after_momentum():
  """SimCLR's LARS (optax.lars): v = m v + lr_t u, p -= v; BYOL's / MoCo v3's: v = m v + u, p -= lr_t v. With u = 1
  (a bias: no trust ratio) and lr_t = 0.1, 0.2 over two steps, the second updates are 0.9 x 0.1 + 0.2 = 0.29 and
  0.2 x (0.9 + 1) = 0.38."""
  params, grads = {"bias": jnp.zeros(2)}, {"bias": jnp.ones(2)}
  for lr_after_momentum, expected in ((False, 0.29), (True, 0.38)):
    tx = optim.lars(lambda step: 0.1 * (step + 1), 0.0, optim.decay_mask, 0.001, 0.9, lr_after_momentum)
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["bias"], -expected, rtol=1e-6)
  # The default order keeps optax.lars' state layout (checkpoints of earlier runs restore).
  default = optim.lars(0.1, 1e-6, optim.decay_mask, 0.001, 0.9, False).init(params)
  reference = optax.lars(0.1, 1e-6, optim.decay_mask, trust_ratio_mask=optim.decay_mask).init(params)
  assert jax.tree.structure(default) == jax.tree.structure(reference)


def test_step_decay_and_decay_of_every_parameter():
  """MoCo's linear classifier: lr 30 x 0.1 at epochs 60 and 80 (here 10 steps per epoch); every parameter decays
  when `decay_norm_and_bias` (the references that pass all parameters to SGD)."""
  config = _config(
    name="sgd", base_lr=30.0, lr_scaling="none", weight_decay=0.5, warmup_steps=0, nesterov=False, momentum=0.0
  )
  config.optimizer.update(schedule="steps", decay_epochs=(60, 80), decay_norm_and_bias=True)
  tx, schedule = optim.make_optimizer(config, batch_size=256, total_steps=1000, steps_per_epoch=10)
  np.testing.assert_allclose([schedule(s) for s in (0, 599, 600, 799, 800, 999)], [30, 30, 3, 3, 0.3, 0.3], rtol=1e-6)
  params = {"bias": jnp.ones(2)}
  updates, _ = tx.update({"bias": jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_allclose(updates["bias"], -30.0 * 0.5, rtol=1e-6)  # The decay reaches the bias.
  assert not optim.decay_mask(params)["bias"]


def test_barlow_twins_lars_gives_biases_their_own_rate_and_the_cosine_ends_at_a_fraction_of_the_peak():
  """facebookresearch/barlowtwins: weights at 0.2 x B/256 with trust ratio and decay, biases and norm parameters
  at 0.0048 x B/256 with neither; warmup, then cosine to 0.001 x the peak. At batch 512: peaks 0.4 and 0.0096."""
  config = _config(base_lr=0.2, weight_decay=0.5, warmup_steps=10, lr_after_momentum=True, norm_and_bias_base_lr=0.0048)
  config.optimizer.end_lr_ratio = 0.001
  tx, schedule = optim.make_optimizer(config, batch_size=512, total_steps=110)
  np.testing.assert_allclose([schedule(10), schedule(110)], [0.4, 0.4 * 0.001], rtol=1e-6)
  np.testing.assert_allclose(schedule(60), 0.4 * (0.001 + 0.999 * 0.5 * (1 + np.cos(np.pi * 0.5))), rtol=1e-5)
  params = {"kernel": jnp.full((4, 4), 2.0), "bias": jnp.full((4,), 2.0), "probe": {"bias": jnp.ones(3)}}
  grads = {"kernel": jnp.full((4, 4), 0.5), "bias": jnp.full((4,), 0.5), "probe": {"bias": jnp.ones(3)}}
  state = tx.init(params)
  for _ in range(11):  # Step 10 runs at the peak; the momentum buffer holds 11 gradients' geometric sum.
    updates, state = tx.update(grads, state, params)
  momentum_sum = sum(0.9**k for k in range(11))
  g = 0.5 + 0.5 * 2.0
  np.testing.assert_allclose(updates["kernel"], -0.4 * momentum_sum * 0.001 * 8.0 / (g * 4) * g, rtol=1e-5)
  np.testing.assert_allclose(updates["bias"], -0.0096 * momentum_sum * 0.5, rtol=1e-5)
  np.testing.assert_allclose(updates["probe"]["bias"], -0.0096 * momentum_sum, rtol=1e-5)
