"""The GAN (DCGAN's networks, three objectives) and the players' part of the shared step: losses on golden values,
the update order and each player's own parameters and optimizer reproduced by hand, k discriminator updates on
disjoint parts of the batch, the one-line errors, and a short run in which the generator learns the digits' mean
image. 8 devices == 1, the NaN batch and bit-exact resume: tests/test_methods.py (gan is one of its METHODS, under
`-m slow`)."""

import dataclasses
import functools
import importlib
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gan_digits
from ssljax import data, losses, optim, sharding, train_step
from ssljax.config import ConfigError
from ssljax.config_checks import validate
from ssljax.evaluators.sample_classes import class_statistics, sample_classes
from ssljax.models.gan import Discriminator, Generator, doublings, pooled_features
from tests import players

LR = 0.05


def _config(arg="runlocal,train_only", **gan):
  config = gan_digits.get_config(arg)
  config.gan.update(gan)
  config.optimizer = dict(
    name="sgd", base_lr=LR, lr_scaling="none", weight_decay=0.0, warmup_steps=0, momentum=0.0, nesterov=False
  )
  config.optimizer.schedule = "constant"
  return config


def _trainer(config, devices: int = 1):
  mesh = sharding.make_mesh((("data", devices),), jax.devices()[:devices])
  return train_step.build_trainer(config, mesh, 256, 10)


def _batch(size: int = 64, side: int = 8, seed: int = 0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.uniform(size=(size, side, side, 1)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 10, size), jnp.int32),
    "index": jnp.arange(size, dtype=jnp.int32),
  }


def softplus(x):
  return math.log1p(math.exp(x))


@pytest.mark.parametrize(
  ("objective", "discriminator", "generator"),
  [
    # real outputs (0, 2), generated (-1, 2) (asymmetric: a sign error changes every value), by hand from each
    # paper's formula.
    (
      "non_saturating",
      (softplus(0) + softplus(-2)) / 2 + (softplus(-1) + softplus(2)) / 2,
      (softplus(1) + softplus(-2)) / 2,
    ),
    ("hinge", (1 + 0) / 2 + (0 + 3) / 2, -(-1 + 2) / 2),
    ("least_squares", ((1 + 1) / 2 + (1 + 4) / 2) / 2, (4 + 1) / 2),
  ],
)
def test_gan_losses_equal_their_formulas(objective, discriminator, generator):
  real, fake = jnp.array([0.0, 2.0]), jnp.array([-1.0, 2.0])
  d_loss = jax.jit(losses.gan_discriminator_loss, static_argnums=2)
  g_loss = jax.jit(losses.gan_generator_loss, static_argnums=1)
  assert float(d_loss(real, fake, objective)) == pytest.approx(discriminator, rel=1e-6)
  assert float(g_loss(fake, objective)) == pytest.approx(generator, rel=1e-6)


def test_non_saturating_generator_gradient_does_not_vanish_where_the_discriminator_wins():
  """d/df softplus(-f) / M = -sigmoid(-f) / M: near -1/M where D(G(z)) -> 0, unlike the minimax log(1 - D(G(z))),
  whose gradient sigmoid(f) / M vanishes there (Goodfellow et al. 2014, section 3)."""
  fake = jnp.array([-8.0, 0.0])
  grad = jax.grad(losses.gan_generator_loss)(fake, "non_saturating")
  np.testing.assert_allclose(grad, -jax.nn.sigmoid(-fake) / 2, rtol=1e-6)
  assert float(grad[0]) < -0.49


@pytest.mark.parametrize("name", ["gan_digits", "gan_cifar10"])
def test_gan_configs_are_dcgan_s_recipe(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert dict(config.optimizer) == {
    "name": "adamw",
    "base_lr": 2e-4,
    "lr_scaling": "none",
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "schedule": "constant",
    "b1": 0.5,
  }
  assert config.batch_size == 128 and config.gan.latent_dim == 100 and config.gan.objective == "non_saturating"
  assert config.gan.discriminator_updates == 1 and not config.online_probe
  assert config.gan.generator_width == config.gan.discriminator_width == 64


def test_dcgan_networks_follow_the_paper():
  assert [doublings(s) for s in (8, 16, 32, 64)] == [1, 2, 3, 4]
  for side in (12, 4, 48):
    with pytest.raises(ValueError, match=f"not {side}"):
      doublings(side)
  generator, discriminator = Generator(16, 1, 64), Discriminator(64)
  noise = jax.random.normal(jax.random.key(0), (4, 100))
  g_vars = generator.init(jax.random.key(1), noise)
  images = generator.apply(g_vars, noise, mutable=["batch_stats"])[0]
  assert images.shape == (4, 16, 16, 1) and float(jnp.abs(images).max()) <= 1.0
  d_vars = discriminator.init(jax.random.key(2), images)
  (logits, hidden), _ = discriminator.apply(d_vars, images, mutable=["batch_stats"])
  assert logits.shape == (4,) and [h.shape for h in hidden] == [(4, 8, 8, 64), (4, 4, 4, 128)]
  # Generator 4 x 4 x 128 -> 8 x 8 x 64 -> 16 x 16 x 1; BatchNorm everywhere but the generator's output and the
  # discriminator's first layer; no biases (each layer before a BatchNorm, and the two outputs, as the example).
  g_params, d_params = g_vars["params"], d_vars["params"]
  assert g_params["Dense_0"]["kernel"].shape == (100, 4 * 4 * 128)
  assert [g_params[f"ConvTranspose_{i}"]["kernel"].shape for i in (0, 1)] == [(4, 4, 128, 64), (4, 4, 64, 1)]
  assert sorted(g_vars["batch_stats"]) == ["BatchNorm_0", "BatchNorm_1"] and sorted(d_vars["batch_stats"]) == [
    "BatchNorm_0"
  ]
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path({**g_params, **d_params})[0]]
  assert not [p for p in paths if "bias" in p and "BatchNorm" not in p]
  kernels = np.concatenate([np.ravel(g_params["Dense_0"]["kernel"]), np.ravel(d_params["Conv_1"]["kernel"])])
  assert abs(kernels.std() - 0.02) < 0.0005 and abs(kernels.mean()) < 0.0005
  scales = np.asarray(g_params["BatchNorm_0"]["scale"])
  assert abs(scales.mean() - 1.0) < 0.005 and 0.01 < scales.std() < 0.03


def test_discriminator_features_are_every_layer_max_pooled_to_4x4():
  hidden = (jax.random.normal(jax.random.key(0), (2, 8, 8, 3)), jax.random.normal(jax.random.key(1), (2, 4, 4, 5)))
  features = pooled_features(hidden)
  first = np.asarray(hidden[0]).reshape(2, 4, 2, 4, 2, 3).max(axis=(2, 4)).reshape(2, -1)
  np.testing.assert_array_equal(features, np.concatenate([first, np.asarray(hidden[1]).reshape(2, -1)], axis=1))


def test_interleaved_parts_are_disjoint_strided_rows():
  batch = {"x": jnp.arange(8), "y": jnp.arange(16).reshape(8, 2)}
  parts = [train_step.interleaved_part(batch, i, 2) for i in range(2)]
  np.testing.assert_array_equal(parts[0]["x"], [0, 2, 4, 6])
  np.testing.assert_array_equal(parts[1]["x"], [1, 3, 5, 7])
  np.testing.assert_array_equal(parts[1]["y"], [[2, 3], [6, 7], [10, 11], [14, 15]])


@pytest.mark.parametrize("updates", [1, 2])
def test_players_update_in_order_each_on_its_own_parameters_with_its_own_optimizer(updates):
  """One step by hand: the discriminator descends its loss `updates` times, update i on the rows i, i + k, ... of
  the batch; the generator then descends its loss against the *updated* discriminator and the BatchNorm statistics
  the discriminator's updates left; each optimizer touches its own subtree only (plain SGD: p - lr g)."""
  trainer = _trainer(_config(discriminator_updates=updates))
  state0 = jax.device_get(trainer.make_state(0))
  batch = _batch()
  state1, metrics = trainer.step(jax.device_put(state0, trainer.state_sharding), batch)
  state1 = jax.device_get(state1)

  player_grad = functools.partial(players.player_grad, trainer, state0)

  params, stats, d_losses = state0.params, state0.model_state, []
  for update in range(updates):
    part = batch if updates == 1 else train_step.interleaved_part(batch, update, updates)
    d_loss, d_grad, stats = player_grad(0, update, part, params, stats)
    params = {**params, "encoder": jax.tree.map(lambda p, g: p - LR * g, params["encoder"], d_grad)}
    d_losses.append(float(d_loss))
  g_loss, g_grad, stats2 = player_grad(1, 0, batch, params, stats)
  g1 = jax.tree.map(lambda p, g: p - LR * g, state0.params["generator"], g_grad)

  assert float(metrics["discriminator/loss"]) == pytest.approx(np.mean(d_losses), rel=1e-5)
  assert float(metrics["generator/loss"]) == pytest.approx(float(g_loss), rel=1e-5)
  expectations = ((params["encoder"], state1.params["encoder"]), (g1, state1.params["generator"]))
  for expected, actual in (*expectations, (stats2, state1.model_state)):
    jax.tree.map(lambda e, a: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6), expected, actual)
  # Against the discriminator before its update, the generator's step would differ: the order is observable.
  _, stale_grad, _ = player_grad(1, 0, batch, state0.params, stats)
  assert not np.allclose(jax.tree.leaves(stale_grad)[0], jax.tree.leaves(g_grad)[0])
  assert sorted(state1.opt_state) == ["discriminator", "generator"]


def test_a_non_finite_generator_update_reverts_the_discriminator_update_too():
  """Only the second player's loss is NaN: the first player's finished update, its optimizer state and the
  BatchNorm statistics of both are reverted with it (a round is all or nothing)."""
  config = _config()
  config.optimizer = dict(name="adamw", base_lr=2e-4, lr_scaling="none", weight_decay=0.0, warmup_steps=0, b1=0.5)
  trainer = _trainer(config)
  discriminator, generator = trainer.method.players
  broken = dataclasses.replace(generator, loss=lambda outputs, batch, step: (jnp.nan, {}))
  method = dataclasses.replace(trainer.method, players=(discriminator, broken))
  tx, schedule = optim.make_player_optimizers(config, method.players, config.batch_size, trainer.num_steps)
  step = jax.jit(functools.partial(train_step.train_step, model=trainer.model, method=method, tx=tx, schedule=schedule))
  state = trainer.make_state(0)
  before = jax.device_get(state)
  after, metrics = step(state, _batch())
  assert int(metrics["nonfinite"]) == 1 and np.isfinite(float(metrics["discriminator/loss"]))
  after = jax.device_get(after)
  for name in ("params", "model_state", "opt_state"):
    jax.tree.map(np.testing.assert_array_equal, getattr(after, name), getattr(before, name))
  assert int(after.step) == 1


def test_a_player_with_k_updates_reads_its_schedule_by_step():
  """The transformation of a player with 2 updates per step counts 2 per step; its cosine schedule is read at
  count // 2, so warmup and decay keep their length in steps (plain SGD on a gradient of 1: update = -lr)."""
  opt = dict(name="sgd", base_lr=1.0, lr_scaling="none", weight_decay=0.0, warmup_steps=0, momentum=0.0)
  tx, schedule = optim._single_optimizer(dict(opt, nesterov=False), 256, 4, 1.0, updates_per_step=2)
  state, lrs = tx.init(jnp.zeros(())), []
  for _ in range(6):
    update, state = tx.update(jnp.ones(()), state, jnp.zeros(()))
    lrs.append(-float(update))
  expected = [float(schedule(s)) for s in (0, 0, 1, 1, 2, 2)]
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  assert expected[0] == 1.0 and expected[2] == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))


def test_k_discriminator_updates_each_read_their_part_and_count_in_their_own_optimizer():
  config = _config(discriminator_updates=2)
  config.optimizer = dict(name="adamw", base_lr=2e-4, lr_scaling="none", weight_decay=0.0, warmup_steps=0, b1=0.5)
  trainer = _trainer(config)
  state = trainer.make_state(0)
  for _ in range(3):
    state, metrics = trainer.step(state, _batch())
  counts = {name: [int(x) for x in jax.tree.leaves(s) if np.ndim(x) == 0] for name, s in state.opt_state.items()}
  # Adam's and its schedule's step counts: 2 and 1 updates per step.
  assert counts == {"discriminator": [6, 6], "generator": [3, 3]}
  assert int(metrics["nonfinite"]) == 0
  # The generator draws as many images as each discriminator update reads: 32 of the 64 rows.
  inputs = trainer.method.make_inputs(_batch(), jax.random.key(0))
  variables = {"params": state.params, **state.model_state}
  outputs = trainer.model.apply(variables, inputs, player="generator", mutable=["batch_stats"])[0]
  assert outputs["fake_logits"].shape == (32,)


def test_bad_gan_settings_are_one_line_errors():
  with pytest.raises(ConfigError, match="config.online_probe"):
    _trainer(players.with_updates(_config(), online_probe=True))
  with pytest.raises(ConfigError, match="config.batch_size: 64 does not split into 3 discriminator updates"):
    _trainer(_config(discriminator_updates=3))
  with pytest.raises(ConfigError, match="config.gan.objective: unknown 'wasserstein'"):
    _trainer(_config(objective="wasserstein"))
  with pytest.raises(ConfigError, match="config.gan.latent_dim: 0 must be >= 1"):
    _trainer(_config(latent_dim=0))
  with pytest.raises(ConfigError, match="config.dataset.image_size: DCGAN needs a side of 4 \\* 2\\^n >= 8 px, not 12"):
    _trainer(players.with_updates(_config(), **{"dataset.image_size": 12}))
  config = _config("runlocal")
  config.evals.linear_eval = dict(type="linear_eval", protocol="simclr")
  with pytest.raises(ConfigError, match="config.evals.linear_eval: linear_eval trains the encoder"):
    _trainer(config)
  simclr = gan_digits.simclr_digits.get_config("runlocal")
  simclr.evals = {"samples": dict(type="gan_samples")}
  with pytest.raises(ConfigError, match="config.evals.samples: gan_samples needs method 'gan', not 'simclr'"):
    validate(simclr)


def test_generator_learns_the_digits_mean_image():
  """400 steps of the smoke networks on 8 px digits: the generated images' mean approaches the data's mean image
  (correlation > 0.8, from about 0 at initialisation, where tanh of small noise is a flat grey)."""
  config = gan_digits.get_config("runlocal,train_only")
  source = data.load_source(config.dataset, "train")
  trainer = _trainer(config)
  sampler = data.StepIndexedSampler(len(source), config.batch_size, config.seed)
  state = trainer.make_state(0)
  real_mean = np.mean(source.get(np.arange(len(source)))["image"], axis=0).ravel()

  def generated_mean(state):
    noise = jax.random.normal(jax.random.key(1), (256, config.gan.latent_dim))
    variables = {"params": state.params, **state.model_state}
    images = trainer.model.apply(variables, noise, method="generate", mutable=["batch_stats"])[0]
    return np.asarray(images).mean(axis=0).ravel()

  before = np.corrcoef(generated_mean(state), real_mean)[0, 1]
  for _, batch in data.train_batches(source, sampler, trainer.batch_sharding, 0, 400):
    state, metrics = trainer.step(state, batch)
  after = np.corrcoef(generated_mean(state), real_mean)[0, 1]
  assert int(metrics["nonfinite"]) == 0
  assert after > 0.8 and after > before + 0.5, (before, after)  # Measured: -0.09 -> 0.91.


def test_sample_class_statistics_are_confidence_and_effective_number_of_classes():
  one_class = np.array([[0.9, 0.1], [0.7, 0.3]])
  assert class_statistics(one_class) == pytest.approx({"classifier_confidence": 0.8, "classes_covered": 1.0})
  even = np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 0.8], [0.5, 0.25, 0.25]])  # classes 0, 1, 2, 0
  shares = np.array([0.5, 0.25, 0.25])
  expected = {
    "classifier_confidence": (0.6 + 1.0 + 0.8 + 0.5) / 4,
    "classes_covered": np.exp(-np.sum(shares * np.log(shares))),
  }
  assert class_statistics(even) == pytest.approx(expected)


def test_real_images_scored_as_samples_equal_the_real_test_reference():
  """`sample_classes` on the test images themselves gives exactly the "real_test" reference; a constant image is
  one class."""
  config = gan_digits.get_config("runlocal")
  context = types.SimpleNamespace(
    train_source=data.load_source(config.dataset, "train"), test_source=data.load_source(config.dataset, "test")
  )
  test = context.test_source.get(np.arange(100))["image"]
  results = sample_classes(context, "x", test)
  for statistic in ("classifier_confidence", "classes_covered"):
    assert results[f"x/ssl/{statistic}"] == results[f"x/real_test/{statistic}"]
  assert results["x/real_test/classes_covered"] > 9.0 and results["x/real_test/classifier_confidence"] > 0.8
  grey = sample_classes(context, "x", np.full_like(test, 0.5))
  assert grey["x/ssl/classes_covered"] == 1.0


def test_end_to_end_run_trains_evaluates_the_discriminator_and_writes_samples(tmp_path):
  """The smoke config through `python -m ssljax.train`'s code path: finite player losses and the collapse metric
  every logged step, the discriminator's features through the linear probe, the samples' picture and scores."""
  import json

  from ssljax import experiment

  config = gan_digits.get_config("runlocal")
  config.evals = {
    "linear": dict(type="linear_probe", label_budgets=("all",), steps=50),
    "samples": dict(type="gan_samples", num_images=16, num_scored=100, seed=0),
  }
  results = experiment.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = [row for row in rows if "generator/loss" in row]
  assert [row["step"] for row in logged] == list(range(2, 13, 2))
  assert all(0.0 < row["generator/sample_std"] <= 1.0 and np.isfinite(row["discriminator/loss"]) for row in logged)
  assert (tmp_path / "gan_samples.png").exists()
  assert 0.3 < results["linear_fast/ssl/all"] <= 1.0, results
  assert 1.0 <= results["gan_samples/ssl/classes_covered"] <= 10.0
  assert results["gan_samples/real_test/classifier_confidence"] > 0.8
