"""Augmentations: identities at zero strength, reference formulas, determinism per key, jit + vmap."""

import colorsys
import re

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


def test_per_operation_jitter_magnitudes():
  """(b, c, s, h) = 0 is the identity; brightness alone only rescales; SimCLR's strength s equals magnitudes
  (0.8 s, 0.8 s, 0.8 s, 0.2 s) draw for draw."""
  image = IMAGES[0]
  np.testing.assert_allclose(augment.color_jitter(image, jax.random.key(0), magnitudes=(0, 0, 0, 0)), image, atol=1e-6)
  out = augment.color_jitter(image * 0.5, jax.random.key(1), magnitudes=(0.4, 0.0, 0.0, 0.0))
  ratio = np.asarray(out) / np.asarray(image * 0.5)
  np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
  assert 0.6 <= ratio.flat[0] <= 1.4 and ratio.flat[0] != 1.0
  for key in range(3):
    np.testing.assert_array_equal(
      augment.color_jitter(image, jax.random.key(key), 0.5),
      augment.color_jitter(image, jax.random.key(key), magnitudes=(0.4, 0.4, 0.4, 0.1)),
    )


def _views_config(**extra):
  from ml_collections import ConfigDict

  base = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, jitter_strength=0.0)
  base.update(grayscale_prob=0.0, blur_prob=0.0, blur_sigma=(0.1, 2.0), solarize_prob=0.0)
  return ConfigDict(dict(dataset=dict(image_size=16), augment=base, **extra))


def test_views_are_crop_major_with_their_own_augmentations():
  """BYOL's asymmetric views: only the second view is solarised; DINO's local crops have their own size; rows
  are crop-major (all images' view 1, then all images' view 2, then each local crop)."""
  config = _views_config(
    views=dict(view1=dict(solarize_prob=0.0), view2=dict(solarize_prob=1.0)),
    multicrop=dict(num_local=3, local_size=8),
  )
  global_views, local_view, num_local = augment.view_configs(config)
  assert (global_views[1].solarize_prob, local_view.size, num_local) == (1.0, 8, 3)
  views = jax.jit(lambda x, k: augment.multi_view({"image": x}, k, global_views, local_view, num_local))(
    IMAGES, jax.random.key(0)
  )
  n = IMAGES.shape[0]
  assert views["global"].shape == (2 * n, 16, 16, 3) and views["local"].shape == (3 * n, 8, 8, 3)
  np.testing.assert_allclose(views["global"][:n], IMAGES, atol=1e-5)  # Full crop, nothing else: the images.
  np.testing.assert_allclose(views["global"][n:], augment.solarize(IMAGES), atol=1e-5)
  half = IMAGES.reshape(n, 8, 2, 8, 2, 3).mean(axis=(2, 4))
  for crop in range(3):
    np.testing.assert_allclose(views["local"][crop * n : (crop + 1) * n], half, atol=1e-5)
  # Without per-view settings both views share `augment`, and SimCLR's two views are unchanged by this API.
  plain, _, _ = augment.view_configs(_views_config())
  assert plain[0] == plain[1]
  key = jax.random.key(3)
  a, b = jax.random.split(key)
  expected = jnp.concatenate([augment.augment_batch(IMAGES, a, plain[0]), augment.augment_batch(IMAGES, b, plain[1])])
  np.testing.assert_array_equal(augment.global_views({"image": IMAGES}, key, plain), expected)


def test_host_cut_crops_get_every_augmentation_but_the_crop():
  """With batch["crops"] (data.HostCrops) each view starts from its own crops: the device skips the crop and runs
  the rest (here: a flip with probability 1, solarisation on view 2), with the keys of the device-cropped path."""
  config = _views_config(views=dict(view2=dict(solarize_prob=1.0)), multicrop=dict(num_local=1, local_size=8))
  config.augment.update(crop_scale=(0.08, 1.0), crop_ratio=(0.75, 1.33), flip_prob=1.0)  # Only the flip may act.
  global_views, local_view, num_local = augment.view_configs(config)
  crops = (IMAGES, IMAGES[::-1], IMAGES[:, :8, :8])
  views = jax.jit(lambda c, k: augment.multi_view({"crops": c}, k, global_views, local_view, num_local))(
    crops, jax.random.key(0)
  )
  n = IMAGES.shape[0]
  np.testing.assert_allclose(views["global"][:n], IMAGES[:, :, ::-1], atol=1e-5)
  np.testing.assert_allclose(views["global"][n:], augment.solarize(IMAGES[::-1, :, ::-1]), atol=1e-5)
  np.testing.assert_allclose(views["local"], IMAGES[:, :8, 7::-1], atol=1e-5)
  pixels = np.round(np.asarray(IMAGES) * 255).astype(np.uint8)  # HostCrops' uint8 crops, converted on the device.
  single = augment.single_view({"crops": (pixels,)}, jax.random.key(1), global_views[0])
  np.testing.assert_allclose(single, pixels[:, :, ::-1] / np.float32(255), atol=1e-6)


def _sequential_jitter(image, key, magnitudes, brightness="multiply", saturation="blend"):
  """The reference formulation: draw the order and factors as `color_jitter` does, then apply the four
  transforms one after the other, clipping after each (torchvision / SimCLR; with "add" / "hsv", tf.image and
  DeepMind's BYOL: a brightness delta, saturation scaled in HSV), with colorsys for HSV."""
  order_key, *keys = jax.random.split(key, 5)
  factors = [jax.random.uniform(k, minval=1 - m, maxval=1 + m) for k, m in zip(keys[:3], magnitudes[:3], strict=True)]
  delta = float(jax.random.uniform(keys[0], minval=-magnitudes[0], maxval=magnitudes[0]))
  hue_shift = jax.random.uniform(keys[3], minval=-magnitudes[3], maxval=magnitudes[3])
  gray = lambda x: np.broadcast_to((x @ np.array([0.2989, 0.5870, 0.1140]))[..., None], x.shape)  # noqa: E731

  def in_hsv(x, change):
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3)])
    return np.array([colorsys.hsv_to_rgb(*change(*p)) for p in hsv]).reshape(x.shape)

  transforms = [
    (lambda x: x + delta) if brightness == "add" else (lambda x: x * factors[0]),
    lambda x: (x - x.mean(axis=(0, 1))) * factors[1] + x.mean(axis=(0, 1)),
    (lambda x: in_hsv(x, lambda h, s, v: (h, min(1.0, s * float(factors[2])), v)))
    if saturation == "hsv"
    else (lambda x: gray(x) + (x - gray(x)) * factors[2]),
    lambda x: in_hsv(x, lambda h, s, v: ((h + float(hue_shift)) % 1.0, s, v)),
  ]
  image = np.asarray(image, np.float64)
  for kind in np.asarray(jax.random.permutation(order_key, 4)):
    image = np.clip(transforms[kind](image), 0.0, 1.0)
  return image


@pytest.mark.parametrize("brightness,saturation", [("multiply", "blend"), ("add", "hsv")])
def test_jitter_slots_equal_the_sequential_transforms(brightness, saturation):
  """One elementwise pass per position of the random order equals applying the transforms in that order (every
  order the keys draw, incl. hue at each position), with colorsys for the hue: torchvision's jitter, and
  DeepMind's BYOL jitter (additive brightness, HSV saturation) with its magnitudes."""
  image = IMAGES[1, :6, :6]
  magnitudes = (0.4, 0.4, 0.4, 0.1) if brightness == "multiply" else (0.4, 0.4, 0.2, 0.1)

  def jitter(key):
    return augment.color_jitter(image, key, magnitudes=magnitudes, brightness=brightness, saturation=saturation)

  keys = jax.random.split(jax.random.key(4), 24)
  for key, out in zip(keys, jax.jit(jax.vmap(jitter))(keys), strict=True):
    reference = _sequential_jitter(image, key, magnitudes, brightness, saturation)
    np.testing.assert_allclose(out, reference, atol=2e-5)


def test_crop_and_blur_matrices_equal_their_reference_formulas():
  """Crop + flip as two interpolation matrices equal jax.image.scale_and_translate (bilinear, no antialias) then
  a mirror; the blur as two matrices equals the 2r + 1 tap sum over a reflect- or zero-padded image; a blur not
  applied is the identity."""
  image = jax.random.uniform(jax.random.key(5), (40, 30, 3))
  boxes = [(3.0, 5.0, 10.0, 17.0, 24), (10.0, 2.0, 30.0, 13.0, 8), (0.0, 0.0, 40.0, 30.0, 16)]
  for top, left, box_h, box_w, size in boxes:
    scale = jnp.array([size / box_h, size / box_w])
    reference = jax.image.scale_and_translate(
      image, (size, size, 3), (0, 1), scale, -jnp.array([top, left]) * scale, method="linear", antialias=False
    )
    resize = jax.jit(augment.resize_box, static_argnums=5, static_argnames="flip")
    np.testing.assert_allclose(resize(image, top, left, box_h, box_w, size), reference, atol=1e-5)
    flipped = resize(image, top, left, box_h, box_w, size, flip=True)
    np.testing.assert_allclose(flipped, reference[:, ::-1], atol=1e-5)
  key = jax.random.key(6)
  sigma = float(jax.random.uniform(key, minval=0.5, maxval=2.0))

  def taps(radius):  # Kernel side 10% of the image side: radius 2 for 40 rows, 1 for 30 columns.
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return weights / weights.sum()

  for padding, numpy_mode in (("reflect", "reflect"), ("zero", "constant")):  # torchvision's; BYOL's 'SAME'.
    padded = np.pad(np.asarray(image), ((2, 2), (1, 1), (0, 0)), mode=numpy_mode)
    rows = sum(t * padded[i : i + 40] for i, t in enumerate(taps(2)))
    reference = sum(t * rows[:, i : i + 30] for i, t in enumerate(taps(1)))
    np.testing.assert_allclose(augment.gaussian_blur(image, key, (0.5, 2.0), padding=padding), reference, atol=1e-5)
  np.testing.assert_allclose(augment.gaussian_blur(image, key, (0.5, 2.0), apply=False), image, atol=1e-6)


def test_jitter_factors_are_floored_at_zero():
  """Strengths above 1.25 give magnitudes above 1: a factor drawn below 0 would turn the view black (a quarter of
  the views at brightness magnitude 2); torchvision and SimCLR v2 draw from [max(0, 1 - m), 1 + m]."""
  image = IMAGES[0] * 0.5 + 0.25
  keys = jax.random.split(jax.random.key(8), 64)
  views = jax.jit(jax.vmap(lambda k: augment.color_jitter(image, k, magnitudes=(2.0, 0.0, 0.0, 0.0))))(keys)
  assert float(jnp.min(jnp.max(views, axis=(1, 2, 3)))) > 0.0


def test_pipeline_reduces_images_only_over_every_axis():
  """No reduction of an image keeps its short channel axis (a mean over (H, W) per channel): XLA's GPUs run those
  as three-lane column reductions, which took half of the SimCLR ResNet-50 step on an H200 (issue 21). Every
  reduction of a [N, H, W, C] image in the lowered pipeline runs over its last axis too."""
  config = augment.AugmentConfig(size=16, blur_prob=0.5, solarize_prob=0.2)
  images = jnp.zeros((4, 16, 16, 3))
  text = jax.jit(lambda x, k: augment.augment_batch(x, k, config)).lower(images, jax.random.key(0)).as_text()
  reductions = re.findall(r"stablehlo\.reduce\(.*?across dimensions = \[([\d, ]*)\] : \(tensor<4x16x16x3xf32>", text)
  assert len(reductions) >= 4, text  # The jitter's four positions.
  assert all("3" in dims.split(", ") for dims in reductions), reductions
