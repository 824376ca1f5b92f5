"""Colorization (Zhang et al. 2016): Lab conversion, the ab bins, soft-encoding, class rebalancing and the annealed
mean on golden values, the loss on 8 devices == 1, and a short run on a colour dataset the test writes
(tests/tiny_tfds.py) that colours held-out images better than grayscale. The shared step's 8 == 1 / NaN / resume
tests: tests/test_methods.py and tests/test_reliability.py under `pytest -m slow`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from configs import colorization_cifar10
from ssljax import config_checks, data, experiment, losses, prepare
from ssljax.augment import AugmentConfig
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, build_method
from ssljax.methods import colorization as col
from tests import tiny_tfds

# scikit-image's rgb2lab (D65) of pure red, green, blue, white, mid gray and black.
RGB = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0.5, 0.5, 0.5], [0, 0, 0]]
LAB = [
  [53.2408, 80.0925, 67.2032],
  [87.7347, -86.1827, 83.1793],
  [32.2970, 79.1875, -107.8602],
  [100.0, 0.0, 0.0],
  [53.3890, 0.0, 0.0],
  [0.0, 0.0, 0.0],
]


def test_lab_conversion_matches_scikit_image_and_inverts():
  np.testing.assert_allclose(jax.jit(col.rgb_to_lab)(jnp.array(RGB, jnp.float32)), LAB, atol=0.01)
  rgb = np.random.default_rng(0).uniform(size=(1000, 3)).astype(np.float32)
  np.testing.assert_allclose(jax.jit(col.lab_to_rgb)(col.rgb_to_lab(rgb)), rgb, atol=1e-5)


def test_ab_bins_are_the_cells_that_8_bit_colours_reach():
  bins = col.ab_bins(10)
  assert bins.shape == (261, 2) and np.all(bins % 10 == 0)
  np.testing.assert_array_equal(bins.min(0), [-90, -110])
  np.testing.assert_array_equal(bins.max(0), [100, 90])
  present = {tuple(b) for b in bins.astype(int).tolist()}
  assert {(0, 0), (80, 70), (-90, 80), (80, -110)} <= present  # Gray, red, green, blue (LAB above, rounded).
  assert (100, -110) not in present and (-90, -110) not in present  # No sRGB colour is that far out.
  assert len(col.ab_bins(20)) < len(bins) / 3  # Coarser cells: fewer bins.


def _numpy_soft_encode(ab, bins, neighbours, sigma):
  squared = np.sum((ab[:, None, :] - bins[None]) ** 2, -1)
  encoded = np.zeros_like(squared)
  for row, order in enumerate(np.argsort(squared, axis=1, kind="stable")[:, :neighbours]):
    kernel = np.exp(-squared[row, order] / (2 * sigma**2))
    encoded[row, order] = kernel / kernel.sum()
  return encoded


def test_soft_encoding_spreads_each_target_over_its_nearest_bins():
  bins = col.ab_bins(10)
  encode = jax.jit(col.soft_encode, static_argnums=(2, 3))
  gray = np.asarray(encode(jnp.zeros((1, 2)), bins, 5, 5.0))[0]  # The centre and its 4 neighbours at distance 10.
  centre, side = 1 / (1 + 4 * np.exp(-2)), np.exp(-2) / (1 + 4 * np.exp(-2))
  expected = {(0, 0): centre, (10, 0): side, (-10, 0): side, (0, 10): side, (0, -10): side}
  got = {tuple(bins[q].astype(int).tolist()): gray[q] for q in np.flatnonzero(gray)}
  assert got.keys() == expected.keys()
  np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-5)
  np.testing.assert_array_equal(
    np.asarray(encode(jnp.array([[30.0, -20.0]]), bins, 1, 5.0))[0] > 0, (bins == [30, -20]).all(-1)
  )
  ab = np.random.default_rng(1).uniform(-80, 80, (64, 2)).astype(np.float32)
  np.testing.assert_allclose(encode(ab, bins, 10, 5.0), _numpy_soft_encode(ab, bins, 10, 5.0), atol=1e-6)


def test_rebalancing_weights_golden_values():
  bins = np.array([[0, 0], [10, 0], [50, 50]], np.float32)
  p, w = col.rebalancing_weights(np.array([7, 0, 0]), bins, prior_sigma=0.0, uniform_mix=0.5)
  np.testing.assert_allclose(p, [1, 0, 0])
  np.testing.assert_allclose(w, [1, 4, 4])  # 1 / (0.5 p + 0.5 / 3) = (1.5, 6, 6), then sum(p w) = 1.
  p, w = col.rebalancing_weights(np.array([3, 0]), bins[:2], prior_sigma=5.0, uniform_mix=0.5)
  e = np.exp(-2)  # exp(-10^2 / (2 * 5^2)): the kernel between the two bins.
  np.testing.assert_allclose(p, [1 / (1 + e), e / (1 + e)])
  unnormalised = 1 / (0.5 * p + 0.25)
  np.testing.assert_allclose(w, unnormalised / np.sum(p * unnormalised))
  assert np.isclose(np.sum(p * w), 1.0) and w[1] > w[0]  # The rare colour weighs more.
  _, w = col.rebalancing_weights(np.array([9, 1, 0]), bins, prior_sigma=5.0, uniform_mix=1.0)
  np.testing.assert_allclose(w, [1, 1, 1])  # lambda = 1: no rebalancing.


def test_annealed_mean_goes_from_the_mean_to_the_mode():
  bins = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 40.0]])
  logits = jnp.log(jnp.array([[0.5, 0.2, 0.3]]))
  np.testing.assert_allclose(col.annealed_mean(logits, bins, 1.0), [[2.0, 12.0]], rtol=1e-6)  # The mean.
  np.testing.assert_allclose(col.annealed_mean(logits, bins, 0.01), [[0.0, 0.0]], atol=1e-6)  # The mode.
  sharpened = np.array([0.5, 0.2, 0.3]) ** (1 / 0.38)
  expected = (sharpened / sharpened.sum()) @ np.asarray(bins)
  np.testing.assert_allclose(col.annealed_mean(logits, bins, 0.38), [expected], rtol=1e-5)


def test_rebalanced_cross_entropy_value_gradients_and_8_devices_equal_1(mesh8):
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(8, 2, 2, 5)).astype(np.float32)
  targets = rng.dirichlet(np.ones(5), size=(8, 2, 2)).astype(np.float32)
  weights = rng.uniform(0, 3, (8, 2, 2)).astype(np.float32)
  weights[0] = 0.0  # A gray image: no loss, no gradient.
  log_softmax = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  expected = -np.mean(weights * np.sum(targets * log_softmax, -1))
  loss_and_grad = jax.jit(jax.value_and_grad(losses.rebalanced_cross_entropy))
  value, grad = loss_and_grad(logits, targets, weights)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  softmax = np.exp(log_softmax)
  np.testing.assert_allclose(grad, weights[..., None] * (softmax - targets) / (8 * 2 * 2), atol=1e-7)
  assert not np.any(np.asarray(grad)[0])
  shard = NamedSharding(mesh8, PartitionSpec("data"))
  sharded = loss_and_grad(*(jax.device_put(x, shard) for x in (logits, targets, weights)))
  np.testing.assert_allclose(sharded[0], value, rtol=1e-6)
  np.testing.assert_allclose(sharded[1], grad, atol=1e-8)


def test_the_loss_weights_each_location_by_its_bin_and_skips_gray_images():
  """Two images of 2 x 2 target locations: a coloured one (every location at bin (30, -20)) and a gray one (|ab|
  <= 5 everywhere). The loss is the rebalancing weight of (30, -20) times the cross-entropy of the coloured image's
  locations, over all 8 locations; the gray image gets no gradient."""
  bins = col.ab_bins(10)
  target_bin = int(np.flatnonzero((bins == [30, -20]).all(-1))[0])
  weights = np.linspace(0.5, 3.0, len(bins)).astype(np.float32)
  ab = np.zeros((2, 2, 2, 2), np.float32)
  ab[0] = [30.0, -20.0]
  ab[1] = [4.0, -5.0]
  logits = np.random.default_rng(3).normal(size=(2, 2, 2, len(bins))).astype(np.float32)
  settings = colorization_cifar10.get_config().colorization

  def loss_of(logits):
    outputs = {"ab": jnp.asarray(ab), "logits": logits, "features": jnp.ones((2, 4))}
    return col.colorization_loss(outputs, None, 0, jnp.asarray(bins), weights, settings)[0]

  targets = np.asarray(col.soft_encode(jnp.asarray(ab[0]), bins, 10, 5.0))  # [2, 2, Q]
  assert np.all(np.argmax(targets, -1) == target_bin)
  log_softmax = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
  expected = weights[target_bin] * -np.sum(targets * log_softmax) / 8
  value, grad = jax.jit(jax.value_and_grad(loss_of))(jnp.asarray(logits))
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  assert np.any(np.asarray(grad)[0]) and not np.any(np.asarray(grad)[1])


def test_targets_are_every_4th_pixel_and_predictions_return_to_them():
  """make_inputs keeps the ab of pixels 0, 4, 8, ... (the reference's stride-4 subsampling); `upsample_ab` puts
  each prediction back on that pixel, linear between them and constant after the last."""
  view = colorization_cifar10.get_config("runlocal").augment.to_dict()
  view.update(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0)
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))

  inputs = col.make_inputs(
    {"image": images, "label": jnp.zeros(2, jnp.int32)}, jax.random.key(1), AugmentConfig(16, **view)
  )
  lab = np.asarray(col.rgb_to_lab(images))
  np.testing.assert_allclose(inputs["ab"], lab[:, ::4, ::4, 1:], atol=1e-3)
  np.testing.assert_allclose(inputs["image"], (lab[..., :1] - 50) / 50, atol=1e-4)
  ramp = jnp.broadcast_to(jnp.arange(4.0)[None, :, None, None] * 10, (1, 4, 4, 2))  # 0, 10, 20, 30 down the rows.
  up = np.asarray(col.upsample_ab(ramp, 16))[0, :, 0, 0]
  np.testing.assert_allclose(up, [0, 2.5, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5, 25, 27.5, 30, 30, 30, 30], atol=1e-5)


def _config(data_dir, *overrides):
  config = colorization_cifar10.get_config("runlocal,train_only")
  config.dataset.update(name=tiny_tfds.COLOURS_NAME, data_dir=str(data_dir), image_size=tiny_tfds.COLOURS_SIDE)
  for key, value in overrides:
    config[key] = value
  return config


@pytest.fixture(scope="module")
def colour_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  prepare.prepare(tiny_tfds.COLOURS_NAME, str(data_dir))
  return data_dir


def test_the_colour_prior_counts_the_training_pixels_nearest_bins(colour_data_dir):
  source = data.ArraySource(np.broadcast_to(np.array([1, 0, 0], np.float32), (5, 8, 8, 3)), np.zeros(5, np.int32), 1)
  counts = col.bin_counts(source, col.ab_bins(10), num_images=3, seed=0)
  red = np.flatnonzero((col.ab_bins(10) == [80, 70]).all(-1))[0]
  assert counts[red] == 3 * 2 * 2 and counts.sum() == 12  # 3 images, every 4th pixel of 8 x 8.
  config = _config(colour_data_dir)
  train = data.load_source(config.dataset, "train")
  method = build_method(config, BuildInfo(10, train_source=train))
  weights = method.loss.keywords["weights"]
  counts = col.bin_counts(train, col.ab_bins(10), config.colorization.prior_images, config.seed)
  p, expected = col.rebalancing_weights(counts, col.ab_bins(10), 5.0, 0.5)
  np.testing.assert_allclose(weights, expected, rtol=1e-6)
  assert np.isclose(np.sum(p * weights), 1.0) and weights.max() / weights.min() > 1.5


@pytest.mark.parametrize(
  "override, message",
  [
    (("colorization", "grid", 0), "config.colorization.grid: 0 is invalid"),
    (("colorization", "uniform_mix", 0.0), "config.colorization.uniform_mix: 0.0 is invalid"),
    (("augment", "jitter_prob", 0.8), "config.augment.jitter_prob: 0.8 would change the colours"),
    (("dataset", "channels", 1), "config.dataset.channels: colorization needs colour (RGB) images, not 1"),
    (
      ("dataset", "image_size", 20),
      "config.dataset.image_size: 20 px is not a multiple of the ResNet's total stride 8",
    ),
  ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(override, message):
  config = colorization_cifar10.get_config("runlocal")
  section, key, value = override
  config[section][key] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    config_checks.validate(config)
    build_method(config, BuildInfo(10))


def test_evaluators_that_train_the_encoder_on_rgb_are_refused():
  config = colorization_cifar10.get_config("runlocal")
  config.evals.finetune = dict(type="finetune")
  with pytest.raises(
    ConfigError,
    match="config.evals.finetune: finetune trains the encoder on images as config.model builds it; a colorizer's",
  ):
    build_method(config, BuildInfo(10))


# 45 s from a cold compilation cache: under -m slow, for CI's 30 minutes (the loss's wiring is tested above).
@pytest.mark.slow
def test_a_short_run_colours_held_out_images_better_than_grayscale(colour_data_dir, tmp_path):
  """100 steps on blobs whose colour follows their lightness: the held-out AuC of the ab error beats grayscale's
  (measured 0.876 vs 0.798), and grayscale's equals the curve computed here from the test images."""
  config = _config(colour_data_dir, ("total_steps", 100))
  config.optimizer.base_lr = 1e-2
  config.evals = {
    "colours": {"type": "colorization", "every_steps": 0, "num_images": 8},
    "knn": {"type": "knn", "ks": (5,)},
  }
  config.eval_baselines = ("random_init",)  # Its BatchNorm statistics measured on L, as the trunk reads.
  results = experiment.train_and_evaluate(config, str(tmp_path))
  assert 0 <= results["knn/random_init/k5"] <= 1
  test = data.load_source(config.dataset, "test").get(np.arange(tiny_tfds.SPLITS["test"]))["image"]
  error = np.linalg.norm(np.asarray(col.rgb_to_lab(test))[..., 1:], axis=-1).ravel()
  gray_auc = np.mean([np.mean(error <= t) for t in range(151)])
  np.testing.assert_allclose(results["colorization/grayscale/auc"], gray_auc, rtol=1e-5)
  assert results["colorization/ssl/auc"] > gray_auc + 0.05, results
  assert (tmp_path / "colorization.png").exists()
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses_logged = [row["loss"] for row in logged if "loss" in row]
  assert losses_logged[-1] < 0.85 * losses_logged[0]  # Measured 1.91 at step 2, 1.48 at step 100.
