"""Augmentations: identities at zero strength, reference formulas, determinism per key, jit + vmap."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import augment

IMAGES = jax.random.uniform(jax.random.key(0), (6, 16, 16, 3))


def test_full_crop_is_identity_and_box_resize_matches_subsampling():
  out = augment.random_resized_crop(IMAGES[0], jax.random.key(1), 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
  np.testing.assert_allclose(out, IMAGES[0], atol=1e-6)
  # Downscaling the box [0,16)x[0,16) to 8 px: each output pixel is centred between two input pixels.
  half = augment.resize_box(IMAGES[0], 0.0, 0.0, 16.0, 16.0, 8)
  expected = IMAGES[0].reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
  np.testing.assert_allclose(half, expected, atol=1e-6)
  # A 4x4 box at (2, 6) resized to 4 px is exactly that box.
  np.testing.assert_allclose(augment.resize_box(IMAGES[0], 2.0, 6.0, 4.0, 4.0, 4), IMAGES[0, 2:6, 6:10], atol=1e-6)


def test_crop_area_fraction_follows_scale():
  crop = jax.jit(
    lambda k: augment.random_resized_crop(jnp.arange(64.0**2).reshape(64, 64, 1), k, 64, (0.25, 0.25), (1.0, 1.0))
  )
  # A quarter of the area with ratio 1 is a 32x32 box: neighbouring output pixels step by 32/64 input pixels.
  out = crop(jax.random.key(3))[..., 0]
  np.testing.assert_allclose(np.diff(out[10, 5:50]), 0.5, atol=1e-3)


def test_hsv_round_trip_and_colorsys():
  hsv = augment.rgb_to_hsv(IMAGES)
  np.testing.assert_allclose(augment.hsv_to_rgb(hsv), IMAGES, atol=1e-5)
  for pixel in np.asarray(IMAGES[0, :3, 0]):
    np.testing.assert_allclose(augment.rgb_to_hsv(jnp.asarray(pixel)), colorsys.rgb_to_hsv(*pixel), atol=1e-5)


def test_color_jitter_zero_strength_is_identity_and_random_order_changes_result():
  np.testing.assert_allclose(augment.color_jitter(IMAGES[0], jax.random.key(0), 0.0), IMAGES[0], atol=1e-5)
  outs = {np.asarray(augment.color_jitter(IMAGES[0], jax.random.key(k), 1.0)).tobytes() for k in range(5)}
  assert len(outs) == 5


def test_grayscale_and_solarize_formulas():
  gray = augment._grayscale(IMAGES[0])
  expected = 0.2989 * IMAGES[0, ..., 0] + 0.5870 * IMAGES[0, ..., 1] + 0.1140 * IMAGES[0, ..., 2]
  np.testing.assert_allclose(gray[..., 1], expected, atol=1e-6)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2])
  np.testing.assert_allclose(augment.solarize(jnp.array([0.2, 0.5, 0.9])), [0.2, 0.5, 0.1], atol=1e-6)


def test_blur_keeps_constant_images_and_smooths_noise():
  constant = jnp.full((20, 20, 3), 0.3)
  np.testing.assert_allclose(augment.gaussian_blur(constant, jax.random.key(0)), constant, atol=1e-6)
  noise = jax.random.uniform(jax.random.key(1), (40, 40, 1))
  blurred = augment.gaussian_blur(noise, jax.random.key(2), sigma_range=(1.0, 1.0))
  assert float(blurred.std()) < 0.6 * float(noise.std())
  np.testing.assert_allclose(blurred.mean(), noise.mean(), atol=0.01)


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_pipeline_jits_is_deterministic_per_key_and_independent_per_example(channels):
  config = augment.AugmentConfig(size=12, blur_prob=0.5, solarize_prob=0.2)
  images = jnp.broadcast_to(IMAGES[:1, ..., :channels], (6, 16, 16, channels))
  run = jax.jit(augment.augment_batch, static_argnums=2)
  a, b = run(images, jax.random.key(1), config), run(images, jax.random.key(1), config)
  assert a.shape == (6, 12, 12, channels)
  np.testing.assert_array_equal(a, b)
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  # The same image gets a different view in every row: each example has its own key.
  assert len({np.asarray(row).tobytes() for row in a}) == 6
  assert not np.array_equal(a, run(images, jax.random.key(2), config))
