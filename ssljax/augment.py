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
  # How brightness and saturation change: "multiply" / "blend" as torchvision's ColorJitter (MoCo, SimSiam, DINO);
  # "add" / "hsv" as tf.image and DeepMind's BYOL augmentations.py (a brightness delta, saturation scaled in HSV).
  jitter_brightness: str = "multiply"
  jitter_saturation: str = "blend"
  grayscale_prob: float = 0.2
  blur_prob: float = 0.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  blur_padding: str = "reflect"  # torchvision's GaussianBlur; "zero": a 'SAME' convolution (BYOL's, SimCLR's TF).
  solarize_prob: float = 0.0


def crop_box(key, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10):
  """Inception-style crop box (top, left, box_h, box_w) with torchvision's RandomResizedCrop sampler: area fraction
  ~ U(scale), log aspect ratio ~ U(log ratio), up to `attempts` boxes drawn and the first that fits used, else the
  largest centred box with an aspect ratio inside `ratio`. (SimCLR's TF code samples with
  tf.image.sample_distorted_bounding_box, whose box distribution differs in detail.)
  """
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
  return top, left, crop_h, crop_w


def random_resized_crop(image, key, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10):
  """A `crop_box` of `image` resized (bilinear) to size x size."""
  top, left, box_h, box_w = crop_box(key, image.shape[0], image.shape[1], scale, ratio, attempts)
  return resize_box(image, top, left, box_h, box_w, size)


def _interpolation_matrix(start, length, in_size: int, out_size: int):
  """[out_size, in_size] bilinear weights sampling [start, start + length) at out_size pixel centres (half-pixel
  convention, no antialiasing, positions clamped to the image: jax.image.scale_and_translate's "linear")."""
  position = start + (jnp.arange(out_size) + 0.5) * (length / out_size) - 0.5
  position = jnp.clip(position, 0.0, in_size - 1.0)
  return jnp.maximum(0.0, 1.0 - jnp.abs(position[:, None] - jnp.arange(in_size)[None, :]))


def _separable(image, rows, columns):
  """rows [H', H] @ image [H, W, C] @ columns [W', W]^T, as two matrix products (MXU / tensor-core work).

  DEFAULT precision: exact float32 on CPUs, TF32 on GPUs, one bf16 pass on TPUs; the relative error (< 2^-8)
  stays below half a step of the 8-bit images the pixels come from."""
  out = jnp.einsum("ph,hwc->pwc", rows.astype(image.dtype), image, precision=jax.lax.Precision.DEFAULT)
  return jnp.einsum("qw,pwc->pqc", columns.astype(image.dtype), out, precision=jax.lax.Precision.DEFAULT)


def resize_box(image, top, left, box_h, box_w, size: int, flip=False):
  """Bilinear resize of the box [top, top+box_h) x [left, left+box_w) of `image` to size x size, mirrored left to
  right when `flip` (folded into the column weights: no pass of its own)."""
  rows = _interpolation_matrix(top, box_h, image.shape[0], size)
  columns = _interpolation_matrix(left, box_w, image.shape[1], size)
  columns = jnp.where(flip, columns[::-1], columns)
  return _separable(image, rows, columns)


_LUMA = (0.2989, 0.5870, 0.1140)  # ITU-R 601.


def _grayscale(image):
  """Luma replicated over the channels; identity for single-channel images. Written per channel (no reduction
  or matrix product over the channel axis) so that it fuses with its neighbours into one pass."""
  if image.shape[-1] == 1:
    return image
  gray = sum(weight * image[..., c] for c, weight in enumerate(_LUMA))
  return jnp.broadcast_to(gray[..., None], image.shape)


def _channel_means(image):
  """[1, 1, C] mean of each channel of an image [H, W, C], as sums of the whole image with the other channels
  masked out. A mean over (H, W) keeps the short channel axis as the minor one, which XLA's GPU emitter runs as a
  column reduction three lanes wide: on an H200 those reductions took 68 of the SimCLR ResNet-50 step's 142 ms
  (256 images, 224 px). Reductions over every axis are row reductions, which run at memory speed."""
  channels = jnp.arange(image.shape[-1])
  sums = [jnp.sum(jnp.where(channels == c, image, 0.0)) for c in range(image.shape[-1])]
  return jnp.stack(sums).reshape(1, 1, -1) / (image.shape[0] * image.shape[1])


def _hsv(r, g, b):
  """(hue as a fraction of a turn, saturation, value) of RGB channels in [0, 1], elementwise."""
  value = jnp.maximum(jnp.maximum(r, g), b)
  chroma = value - jnp.minimum(jnp.minimum(r, g), b)
  safe = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  hue = jnp.where(value == r, (g - b) / safe, jnp.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
  hue = jnp.where(chroma > 0, (hue / 6.0) % 1.0, 0.0)
  return hue, saturation, value


def _rgb(hue, saturation, value):
  """Inverse of `_hsv`: [..., 3] RGB."""
  k = (jnp.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
  return value[..., None] - (value * saturation)[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def rgb_to_hsv(rgb):
  """[..., 3] RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn)."""
  return jnp.stack(_hsv(rgb[..., 0], rgb[..., 1], rgb[..., 2]), axis=-1)


def hsv_to_rgb(hsv):
  """Inverse of `rgb_to_hsv`."""
  return _rgb(hsv[..., 0], hsv[..., 1], hsv[..., 2])


def jitter_magnitudes(strength: float) -> tuple[float, float, float, float]:
  """SimCLR's colour-distortion strength s as (brightness, contrast, saturation, hue) magnitudes."""
  return (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)


def _adjust_hsv(image, hue_shift, saturation_factor):
  """`image` [H, W, 3] with its hue turned by `hue_shift` (of a turn) and its HSV saturation scaled by
  `saturation_factor` (clipped to [0, 1]): tf.image.adjust_hue / adjust_saturation."""
  hue, saturation, value = _hsv(image[..., 0], image[..., 1], image[..., 2])
  return _rgb((hue + hue_shift) % 1.0, jnp.clip(saturation * saturation_factor, 0.0, 1.0), value)


JITTER_BRIGHTNESS = ("multiply", "add")
JITTER_SATURATION = ("blend", "hsv")


def color_jitter(
  image,
  key,
  strength: float = 1.0,
  magnitudes: tuple[float, float, float, float] | None = None,
  brightness: str = "multiply",
  saturation: str = "blend",
):
  """Colour distortion: brightness, contrast, saturation and hue in a random order.

  With magnitudes (b, c, s, h) (default: `jitter_magnitudes(strength)`, SimCLR's): contrast scales around each
  channel's mean (tf.image.adjust_contrast) by a factor from [max(0, 1 - c), 1 + c]; brightness multiplies by a
  factor from [max(0, 1 - b), 1 + b] (`brightness` "multiply": torchvision, SimCLR v2's code) or adds a delta
  from U(-b, b) ("add": tf.image.random_brightness, SimCLR v1, DeepMind's BYOL); saturation blends with the
  grayscale image by a factor from [max(0, 1 - s), 1 + s] (`saturation` "blend": torchvision) or scales S in HSV
  ("hsv": tf.image.adjust_saturation, SimCLR's TF code, DeepMind's BYOL); hue turns by U(-h, h) of a turn.
  The image is clipped to [0, 1] after each step, as in every reference. Saturation and hue are skipped for
  single-channel images.

  Each of the four positions of the order is one elementwise pass: brightness, contrast and blended saturation
  are the same map f x + (1 - f) anchor + delta (anchor 0, the channel means, the pixel's luma), and hue and HSV
  saturation one HSV round trip, so the position selects an anchor and factors, not a branch (under vmap a
  `lax.switch` would compute every branch at every position).
  """
  order_key, *factor_keys = jax.random.split(key, 5)
  brightness_m, contrast_m, saturation_m, hue_m = magnitudes or jitter_magnitudes(strength)
  factors = [
    jax.random.uniform(k, minval=max(0.0, 1.0 - m), maxval=1.0 + m)  # Floored at 0 (torchvision, SimCLR v2).
    for k, m in zip(factor_keys[:3], (brightness_m, contrast_m, saturation_m), strict=True)
  ]
  delta = jnp.zeros(())
  if brightness == "add":  # Kind 0 adds the delta and leaves the affine part as the identity.
    factors[0], delta = jnp.ones(()), jax.random.uniform(factor_keys[0], minval=-brightness_m, maxval=brightness_m)
  hsv_saturation = saturation == "hsv" and image.shape[-1] == 3
  saturation_factor = factors[2]
  if hsv_saturation:
    factors[2] = jnp.ones(())  # Kind 2 leaves the affine part as the identity; the HSV pass scales S.
  factors = jnp.stack([*factors, jnp.ones(())])  # Kind 3 (hue) leaves the affine part as the identity.
  hue_shift = jax.random.uniform(factor_keys[3], minval=-hue_m, maxval=hue_m)
  order = jax.random.permutation(order_key, 4)  # 0 brightness, 1 contrast, 2 saturation, 3 hue.
  for position in range(4):
    kind, factor = order[position], factors[order[position]]
    mean = _channel_means(image)
    anchor = jnp.where(kind == 0, 0.0, jnp.where(kind == 1, mean, _grayscale(image)))
    out = factor * image + (1.0 - factor) * anchor + jnp.where(kind == 0, delta, 0.0)
    if image.shape[-1] == 3:
      saturate = hsv_saturation & (kind == 2)
      hsv = _adjust_hsv(image, jnp.where(kind == 3, hue_shift, 0.0), jnp.where(saturate, saturation_factor, 1.0))
      out = jnp.where((kind == 3) | saturate, hsv, out)
    image = jnp.clip(out, 0.0, 1.0)
  return image


BLUR_PADDING = ("reflect", "zero")


def _blur_matrix(sigma, size: int, padding: str = "reflect"):
  """[size, size] Gaussian blur along one axis, kernel side 10% of the image side (odd), with the padding folded
  in: "reflect", taps past an edge mirrored back onto the image (numpy's "reflect": the edge pixel is not
  repeated), or "zero", taps past an edge dropped (a 'SAME' convolution of a zero-padded image)."""
  radius = max(1, size // 20)
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  kernel = jnp.broadcast_to(kernel / jnp.sum(kernel), (size, 2 * radius + 1))
  source = jnp.arange(size)[:, None] + jnp.arange(-radius, radius + 1)[None, :]  # [size, taps] input pixel.
  if padding == "zero":
    kernel = jnp.where((source >= 0) & (source <= size - 1), kernel, 0.0)
    source = jnp.clip(source, 0, size - 1)
  else:
    source = jnp.abs(source)
    source = jnp.where(source > size - 1, 2 * (size - 1) - source, source)
  return jnp.zeros((size, size)).at[jnp.arange(size)[:, None], source].add(kernel)


def gaussian_blur(image, key, sigma_range=(0.1, 2.0), apply=True, padding: str = "reflect"):
  """Separable Gaussian blur, kernel side 10% of the image side (odd), sigma ~ U(sigma_range), `padding` as
  `_blur_matrix`; two matrix products (`_separable`). With `apply` False the matrices are the identity: under vmap
  a blur applied with some probability costs one blur, not a blur and a select."""
  sigma = jax.random.uniform(key, minval=sigma_range[0], maxval=sigma_range[1])

  def matrix(size):
    return jnp.where(apply, _blur_matrix(sigma, size, padding), jnp.eye(size))

  rows = matrix(image.shape[0])
  return _separable(image, rows, rows if image.shape[1] == image.shape[0] else matrix(image.shape[1]))


def solarize(image, threshold: float = 0.5):
  """Invert the pixels at or above `threshold` (BYOL's solarisation)."""
  return jnp.where(image < threshold, image, 1.0 - image)


def _maybe(key, prob: float, transform, image):
  """Apply `transform` with probability `prob`, statically skipped when `prob` is 0."""
  if prob <= 0.0:
    return image
  return jnp.where(_draw(key, prob), transform(image), image)


def _draw(key, prob: float):
  """True with probability `prob` (statically False when `prob` is 0)."""
  return False if prob <= 0.0 else jax.random.uniform(key) < prob


def augment_image(image, key, config: AugmentConfig, cropped: bool = False):
  """One random view of `image` [H, W, C] in [0, 1] -> [size, size, C] in [0, 1]. `cropped`: the image already is
  this view's random resized crop, cut on the host from the full image (`data.HostCrops`): only the rest runs."""
  keys = jax.random.split(key, 10)
  if cropped:
    box = (0, 0, image.shape[0], image.shape[1])  # Resizing the whole image to its own size: the identity.
  else:
    box = crop_box(keys[0], image.shape[0], image.shape[1], config.crop_scale, config.crop_ratio)
  image = resize_box(image, *box, config.size, flip=_draw(keys[1], config.flip_prob))
  jitter = functools.partial(
    color_jitter,
    key=keys[3],
    strength=config.jitter_strength,
    magnitudes=config.jitter,
    brightness=config.jitter_brightness,
    saturation=config.jitter_saturation,
  )
  image = _maybe(keys[2], config.jitter_prob, jitter, image)
  image = _maybe(keys[4], config.grayscale_prob, _grayscale, image)
  if config.blur_prob > 0.0:
    apply = _draw(keys[5], config.blur_prob)
    image = gaussian_blur(image, keys[6], config.blur_sigma, apply=apply, padding=config.blur_padding)
  image = _maybe(keys[7], config.solarize_prob, solarize, image)
  return jnp.clip(image, 0.0, 1.0)


def augment_batch(images, key, config: AugmentConfig, cropped: bool = False):
  """Independent random views of a batch: images [N, H, W, C] in [0, 1] -> [N, size, size, C]."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(functools.partial(augment_image, config=config, cropped=cropped))(images, keys)


def augment_view(batch, index: int, key, config: AugmentConfig):
  """View `index` of every image of a batch: from its crops cut on the host from the full images when the batch
  holds them (batch["crops"], one uint8 or [0, 1] float [N, size, size, C] per view, `data.HostCrops`), else
  from batch["image"]."""
  if "crops" in batch:
    crops = batch["crops"][index]
    crops = crops.astype(jnp.float32) / 255.0 if crops.dtype == jnp.uint8 else crops
    return augment_batch(crops, key, config, cropped=True)
  return augment_batch(batch["image"], key, config)


def single_view(batch, key, config: AugmentConfig):
  """A method's inputs when it sees one view per image."""
  return augment_view(batch, 0, key, config)


def global_views(batch, key, views: list[AugmentConfig]):
  """[N, H, W, C] -> [2N, size, size, C]: the views of every image (each with its own augmentation), view-major."""
  return multi_view(batch, key, views, None, 0)["global"]


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


def multi_view(batch, key, global_views: list[AugmentConfig], local_view: AugmentConfig | None, num_local: int):
  """Crop-major views of a batch: {"global": [G*N, size, size, C] (all first views, then all second views, ...),
  "local": [V*N, local_size, local_size, C] (present when `num_local` > 0)}. Every view of every image has its own
  key; the global views split `key` as SimCLR's two views always have."""
  global_key, local_key = jax.random.split(key)
  view_keys = jax.random.split(key if local_view is None else global_key, len(global_views))
  views = {
    "global": jnp.concatenate(
      [augment_view(batch, g, k, c) for g, (k, c) in enumerate(zip(view_keys, global_views, strict=True))]
    )
  }
  if local_view is not None:
    local_keys = jax.random.split(local_key, num_local)
    views["local"] = jnp.concatenate(
      [augment_view(batch, len(global_views) + v, k, local_view) for v, k in enumerate(local_keys)]
    )
  return views
