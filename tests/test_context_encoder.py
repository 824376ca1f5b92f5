"""Context encoder: the dropped regions (golden masks), the overlap band's weights, `weighted_l2` against Pathak et
al.'s weighted MSE over the central region (value, gradients, 8 devices == 1), the encoder's input, the settings'
errors, and a short run whose inpainting beats the training mean image. The shared step's 8 == 1 / NaN / resume
tests run it under `pytest -m slow` (tests/test_methods.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from configs import context_encoder_digits
from ssljax import experiment, losses
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, build_method, context_encoder


def test_the_central_hole_is_the_middle_square():
  dropped = context_encoder.drop_masks(None, 2, 8, "center", 3, 1)
  expected = np.zeros((8, 8))
  expected[2:5, 2:5] = 1
  np.testing.assert_array_equal(dropped[..., 0], [expected, expected])


def test_random_blocks_are_squares_anywhere_in_the_image_drawn_per_image():
  one = np.asarray(context_encoder.drop_masks(jax.random.key(0), 4000, 10, "random_blocks", 4, 1))[..., 0]
  assert (one.sum((1, 2)) == 16).all() and (one.any(2).sum(1) == 4).all()  # One 4 x 4 square per image ...
  tops, lefts = np.argmax(one.any(2), axis=1), np.argmax(one.any(1), axis=1)
  # ... with its corner uniform over the 7 x 7 places it fits.
  for corner in (tops, lefts):
    np.testing.assert_allclose(np.bincount(corner, minlength=7) / 4000, 1 / 7, atol=0.02)
  four = np.asarray(context_encoder.drop_masks(jax.random.key(1), 500, 16, "random_blocks", 4, 4))[..., 0]
  assert (four.sum((1, 2)) >= 16).all() and (four.sum((1, 2)) <= 64).all()  # The union of 4, at most 1/4.
  assert len({m.tobytes() for m in four}) == 500


def test_the_overlap_band_around_the_hole_weighs_overlap_weight():
  dropped = context_encoder.drop_masks(None, 1, 8, "center", 2, 1)
  weights = np.asarray(context_encoder.loss_weights(dropped, 1, 10.0))[0, ..., 0]
  expected = np.zeros((8, 8))
  expected[2:6, 2:6] = 10.0
  expected[3:5, 3:5] = 1.0
  np.testing.assert_array_equal(weights, expected)
  np.testing.assert_array_equal(context_encoder.loss_weights(dropped, 0, 10.0), dropped)


def _pathak_center_loss(prediction, target, region, overlap, overlap_weight):
  """The context encoder's central-region loss: the MSE over the predicted `region` x `region` square (hole and
  overlap band), each element weighted 1 in the hole and `overlap_weight` in the band; its gradient by hand."""
  size = target.shape[1]
  start = (size - region) // 2
  crop = (slice(None), slice(start, start + region), slice(start, start + region))
  weights = np.full((region, region, 1), overlap_weight)
  weights[overlap:-overlap, overlap:-overlap] = 1.0
  error = prediction[crop] - target[crop]
  count = error.size
  grad = np.zeros_like(prediction)
  grad[crop] = 2 * weights * error / count
  return np.sum(weights * error**2) / count, grad


def test_weighted_l2_is_the_papers_weighted_mse_over_the_central_region_on_8_devices_and_1(mesh8):
  rng = np.random.default_rng(0)
  prediction, target = rng.uniform(size=(2, 2, 16, 16, 3))
  weights = context_encoder.loss_weights(context_encoder.drop_masks(None, 2, 16, "center", 6, 1), 1, 10.0)
  expected, expected_grad = _pathak_center_loss(prediction, target, 8, 1, 10.0)
  loss = jax.jit(jax.value_and_grad(losses.weighted_l2))
  value, grad = loss(jnp.asarray(prediction, jnp.float32), jnp.asarray(target, jnp.float32), weights)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-8)  # Zero off the hole and its band.
  shard = NamedSharding(mesh8, PartitionSpec("data"))
  sharded = [jax.device_put(jnp.tile(jnp.asarray(a, jnp.float32), (4, 1, 1, 1)), shard) for a in (prediction, target)]
  value8 = loss(*sharded, jax.device_put(jnp.tile(weights, (4, 1, 1, 1)), shard))[0]
  np.testing.assert_allclose(value8, expected, rtol=1e-5)


def test_the_encoder_sees_the_image_with_the_hole_filled_by_the_mean_pixel_and_the_target_is_whole():
  config = context_encoder_digits.get_config("random_blocks")
  method = build_method(config, BuildInfo(num_classes=10))
  images = jax.random.uniform(jax.random.key(0), (32, 16, 16, 1))
  inputs = method.make_inputs({"image": images, "label": jnp.zeros(32, jnp.int32)}, jax.random.key(1))
  dropped = np.asarray(inputs["target_weights"][..., 0] > 0)
  np.testing.assert_allclose(inputs["target"], images, atol=1e-6)  # No augmentation: the whole image.
  image = np.asarray(inputs["image"][..., 0])
  np.testing.assert_allclose(image[~dropped], np.asarray(images[..., 0])[~dropped], atol=1e-6)
  np.testing.assert_allclose(image[dropped], float(jnp.mean(images)), rtol=1e-5)
  assert 0.05 < dropped.mean() < 0.25  # Four 4 px squares in 16 px images: at most a quarter.


@pytest.mark.parametrize(
  ("override", "key"),
  [
    ({"mask": "ring"}, "mask: 'ring'"),
    ({"hole_size": 16}, "hole_size: 16"),
    ({"hole_size": 8, "overlap": 4}, "overlap: 4"),
    ({"overlap_weight": -1.0}, "overlap_weight: -1.0"),
  ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(override, key):
  config = context_encoder_digits.get_config()
  config.context_encoder.update(override)
  with pytest.raises(ConfigError, match=f"config.context_encoder.{key} is invalid for 16 px images"):
    build_method(config, BuildInfo(num_classes=10))


def test_a_short_run_inpaints_better_than_the_training_mean_image(tmp_path):
  config = context_encoder_digits.get_config("runlocal")
  config.total_steps = 100
  config.optimizer.base_lr = 1e-2
  config.evals = {"inpainting": dict(config.evals.inpainting)}
  config.eval_baselines = ()
  results = experiment.train_and_evaluate(config, str(tmp_path))
  assert (tmp_path / "inpainting.png").stat().st_size > 100
  assert results["inpainting/ssl/hole_mse"] < 0.9 * results["inpainting/mean_image/hole_mse"], results
