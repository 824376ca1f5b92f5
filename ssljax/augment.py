"""SimCLR/BYOL/DINO image augmentations as jit-compiled, per-example functions that run on the accelerator.

Every function here takes one image [H, W, C] with values in [0, 1] and a PRNG key; `augment_batch` vmaps the
composed pipeline over a batch with one key per example, so it compiles into the train step.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """One view's augmentation pipeline; `*_prob` are the probabilities of applying each transform."""

  size: int
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip_prob: float = 0.5
  jitter_prob: float = 0.8
  jitter_strength: float = 1.0
  # Per-operation magnitudes (brightness, contrast, saturation, hue) as torchvision's ColorJitter(0.4, 0.4, 0.2,
  # 0.1) of BYOL / MoCo v2 / DINO; None: SimCLR's (0.8 s, 0.8 s, 0.8 s, 0.2 s) from `jitter_strength` s.
  jitter: tuple[float, float, float, float] | None = None
  grayscale_prob: float = 0.2
  blur_prob: float = 0.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  solarize_prob: float = 0.0


def random_resized_crop(image, key, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10):
  """Inception-style crop: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), resized to size x size.

  Like tf.image.sample_distorted_bounding_box, up to `attempts` boxes are drawn and the first that fits is
  used; if none fits, the largest centred box with an aspect ratio inside `ratio` is used.
  """
  height, width = image.shape[0], image.shape[1]
  area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(area_key, (attempts,), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(ratio_key, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  crop_w = jnp.round(jnp.sqrt(area * aspect))
  crop_h = jnp.round(jnp.sqrt(area / aspect))
  fits = (crop_w <= width) & (crop_h <= height) & (crop_w > 0) & (crop_h > 0)
  first = jnp.argmax(fits)
  in_ratio = jnp.clip(width / height, ratio[0], ratio[1])
  fallback_w = jnp.minimum(width, jnp.round(height * in_ratio))
  fallback_h = jnp.minimum(height, jnp.round(width / in_ratio))
  crop_w = jnp.where(fits[first], crop_w[first], fallback_w)
  crop_h = jnp.where(fits[first], crop_h[first], fallback_h)
  top = jnp.where(fits[first], jnp.floor(jax.random.uniform(y_key) * (height - crop_h + 1)), (height - crop_h) // 2)
  left = jnp.where(fits[first], jnp.floor(jax.random.uniform(x_key) * (width - crop_w + 1)), (width - crop_w) // 2)
  return resize_box(image, top, left, crop_h, crop_w, size)


def resize_box(image, top, left, box_h, box_w, size: int):
  """Bilinear resize of the box [top, top+box_h) x [left, left+box_w) of `image` to size x size."""
  scale = jnp.stack([size / box_h, size / box_w])
  translation = -jnp.stack([top, left]) * scale
  out = jax.image.scale_and_translate(
    image, (size, size, image.shape[2]), (0, 1), scale, translation, method="linear", antialias=False
  )
  return out.astype(image.dtype)


def _grayscale(image):
  """Luma (ITU-R 601) replicated over the channels; identity for single-channel images."""
  if image.shape[-1] == 1:
    return image
  gray = image @ jnp.array([0.2989, 0.5870, 0.1140], image.dtype)
  return jnp.broadcast_to(gray[..., None], image.shape)


def rgb_to_hsv(rgb):
  """[..., 3] RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = jnp.max(rgb, axis=-1)
  chroma = value - jnp.min(rgb, axis=-1)
  safe = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  hue = jnp.where(value == r, (g - b) / safe, jnp.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
  hue = jnp.where(chroma > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv):
  """Inverse of `rgb_to_hsv`."""
  hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  k = (jnp.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
  return value[..., None] - (value * saturation)[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def jitter_magnitudes(strength: float) -> tuple[float, float, float, float]:
  """SimCLR's colour-distortion strength s as (brightness, contrast, saturation, hue) magnitudes."""
  return (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)


def color_jitter(image, key, strength: float = 1.0, magnitudes: tuple[float, float, float, float] | None = None):
  """Colour distortion: brightness, contrast, saturation and hue in a random order.

  With magnitudes (b, c, s, h) (default: `jitter_magnitudes(strength)`, SimCLR's), brightness, contrast and
  saturation scale by factors drawn from [1 - m, 1 + m] (contrast around the image mean, as
  tf.image.adjust_contrast; saturation blends with the grayscale image) and hue shifts by U(-h, h) of a turn.
  The image is clipped to [0, 1] after each step, as in the reference. Saturation and hue are skipped for
  single-channel images.
  """
  order_key, *factor_keys = jax.random.split(key, 5)
  brightness_m, contrast_m, saturation_m, hue_m = magnitudes or jitter_magnitudes(strength)
  factors = [
    jax.random.uniform(k, minval=1.0 - m, maxval=1.0 + m)
    for k, m in zip(factor_keys[:3], (brightness_m, contrast_m, saturation_m), strict=True)
  ]
  hue_shift = jax.random.uniform(factor_keys[3], minval=-hue_m, maxval=hue_m)

  def brightness(x):
    return x * factors[0]

  def contrast(x):
    mean = jnp.mean(x, axis=(0, 1), keepdims=True)
    return (x - mean) * factors[1] + mean

  def saturation(x):
    gray = _grayscale(x)
    return gray + (x - gray) * factors[2]

  def hue(x):
    if x.shape[-1] == 1:
      return x
    hsv = rgb_to_hsv(x)
    return hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + hue_shift) % 1.0))

  transforms = [brightness, contrast, saturation, hue]
  order = jax.random.permutation(order_key, len(transforms))
  for position in range(len(transforms)):
    image = jnp.clip(jax.lax.switch(order[position], transforms, image), 0.0, 1.0)
  return image


def gaussian_blur(image, key, sigma_range=(0.1, 2.0)):
  """Separable Gaussian blur, kernel side 10% of the image side (odd), sigma ~ U(sigma_range), reflect padding."""
  radius = max(1, image.shape[0] // 20)
  sigma = jax.random.uniform(key, minval=sigma_range[0], maxval=sigma_range[1])
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  kernel = (kernel / jnp.sum(kernel)).astype(image.dtype)
  padded = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
  rows = sum(kernel[i] * padded[i : i + image.shape[0], :, :] for i in range(2 * radius + 1))
  return sum(kernel[i] * rows[:, i : i + image.shape[1], :] for i in range(2 * radius + 1))


def solarize(image, threshold: float = 0.5):
  """Invert the pixels at or above `threshold` (BYOL's solarisation)."""
  return jnp.where(image < threshold, image, 1.0 - image)


def _maybe(key, prob: float, transform, image):
  """Apply `transform` with probability `prob`, statically skipped when `prob` is 0."""
  if prob <= 0.0:
    return image
  return jnp.where(jax.random.uniform(key) < prob, transform(image), image)


def augment_image(image, key, config: AugmentConfig):
  """One random view of `image` [H, W, C] in [0, 1] -> [size, size, C] in [0, 1]."""
  keys = jax.random.split(key, 10)
  image = random_resized_crop(image, keys[0], config.size, config.crop_scale, config.crop_ratio)
  image = _maybe(keys[1], config.flip_prob, lambda x: x[:, ::-1], image)
  jitter = functools.partial(color_jitter, key=keys[3], strength=config.jitter_strength, magnitudes=config.jitter)
  image = _maybe(keys[2], config.jitter_prob, jitter, image)
  image = _maybe(keys[4], config.grayscale_prob, _grayscale, image)
  image = _maybe(keys[5], config.blur_prob, lambda x: gaussian_blur(x, keys[6], config.blur_sigma), image)
  image = _maybe(keys[7], config.solarize_prob, solarize, image)
  return jnp.clip(image, 0.0, 1.0)


def augment_batch(images, key, config: AugmentConfig):
  """Independent random views of a batch: images [N, H, W, C] in [0, 1] -> [N, size, size, C]."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(augment_image, in_axes=(0, 0, None))(images, keys, config)


def single_view(batch, key, config: AugmentConfig):
  """A method's inputs when it sees one view per image: `augment_batch` of batch["image"]."""
  return augment_batch(batch["image"], key, config)


def global_views(batch, key, views: list[AugmentConfig]):
  """[N, H, W, C] -> [2N, size, size, C]: the views of every image (each with its own augmentation), view-major."""
  return multi_view(batch["image"], key, views, None, 0)["global"]


def view_configs(config) -> tuple[list[AugmentConfig], AugmentConfig | None, int]:
  """The augmentation of every view a config asks for: ([view 1, view 2], local-crop config or None, number of
  local crops).

  `config.augment` is the pipeline every view starts from; `config.views.view1` / `view2` override keys of it for
  one view (BYOL's asymmetric blur 1.0 / 0.1 and solarisation 0 / 0.2); `config.multicrop` adds `num_local`
  crops of `local_size` px with its own overrides (DINO / SwAV: e.g. crop_scale (0.05, 0.4)).
  """
  size = config.dataset.image_size
  base = dict(config.augment)
  views = config.get("views") or {}
  global_views = [AugmentConfig(size=size, **{**base, **dict(views.get(name) or {})}) for name in ("view1", "view2")]
  multicrop = dict(config.get("multicrop") or {})
  num_local = multicrop.pop("num_local", 0)
  if not num_local:
    return global_views, None, 0
  local_size = multicrop.pop("local_size")
  return global_views, AugmentConfig(size=local_size, **{**base, **multicrop}), num_local


def multi_view(images, key, global_views: list[AugmentConfig], local_view: AugmentConfig | None, num_local: int):
  """Crop-major views of a batch: {"global": [G*N, size, size, C] (all first views, then all second views, ...),
  "local": [V*N, local_size, local_size, C] (present when `num_local` > 0)}. Every view of every image has its own
  key; the global views split `key` as SimCLR's two views always have."""
  global_key, local_key = jax.random.split(key)
  view_keys = jax.random.split(key if local_view is None else global_key, len(global_views))
  views = {
    "global": jnp.concatenate([augment_batch(images, k, c) for k, c in zip(view_keys, global_views, strict=True)])
  }
  if local_view is not None:
    local_keys = jax.random.split(local_key, num_local)
    views["local"] = jnp.concatenate([augment_batch(images, k, local_view) for k in local_keys])
  return views
