"""Colorization (Zhang, Isola & Efros 2016, "Colorful Image Colorization"; lecture 002): the network sees an image's
CIE Lab lightness L and classifies the colour (a, b) of each location among the quantised in-gamut ab bins, trained
with soft-encoded targets and class rebalancing from the training set's colour distribution; its pictures decode
the predicted distributions by the annealed mean.

As the reference (richzhang/colorization, `colorization_train_val_v2.prototxt` and `caffe_traininglayers.py`):
- the input is L centred at 50 (we also divide by 50; the stem's BatchNorm makes the scale moot);
- prediction is at a quarter of the input's resolution and the target ab is subsampled by 4 (every 4th pixel, the
  reference's stride-4 1x1 convolution), its head a stride-2 transposed convolution then two 3x3 convolutions
  (conv8: 256 wide), ReLU after each, and a 1x1 convolution to the bins;
- targets are soft-encoded over the `neighbours` nearest bins with a Gaussian kernel (sigma 5; the paper's text says
  5 neighbours, its code 10);
- each location is weighted by the rebalancing factor of its target's most likely bin, zero for images whose ab
  never exceeds `gray_threshold` (the reference's non-gray mask). The reference applies the weights to the gradient
  only; here they weight the loss (the same gradient), so the logged loss is the weighted one, averaged over all
  locations (the gradient is the reference's up to a constant, which Adam ignores).

Differences: the trunk is the ResNet every method here trains (its last stage's map, stride 8 with the small stem,
upsampled by the head to a quarter; the reference's head reads a BatchNorm'd map, ours the last residual block's);
the bins are the ab cells of side `grid` that some 8-bit sRGB colour falls in (261 for grid 10: the paper's 313 come
from its own gamut file); the empirical distribution is counted on `prior_images` training images drawn by a fixed
seed (the paper: all of ImageNet).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import augment, data, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, refuse_encoder_training

SCHEMA = {
  "grid": int,  # Side of an ab bin (the paper: 10).
  "neighbours": int,  # Soft-encoding: the nearest bins a target spreads over ...
  "sigma": NUMBER,  # ... with a Gaussian kernel of this std, in ab units.
  "prior_sigma": NUMBER,  # The empirical distribution is smoothed by a Gaussian of this std (0: not smoothed).
  "uniform_mix": NUMBER,  # lambda: weights = 1 / ((1 - lambda) p + lambda / Q), normalised to E_p[w] = 1.
  "prior_images": int,  # Training images the empirical distribution is counted on.
  "gray_threshold": NUMBER,  # Images whose |a| and |b| never exceed this (ab units) get no loss.
  "temperature": NUMBER,  # The annealed mean's T (pictures and the colorization evaluator).
  "head_width": int,
}
HIGHEST = jax.lax.Precision.HIGHEST  # Colour conversions in full float32 (no TF32 / bf16 passes on accelerators).
SUBSAMPLE = 4  # Predictions and targets at a quarter of the input's side.
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)  # D65.
_RGB_TO_XYZ = np.array(
  [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]], np.float32
)  # Linear sRGB -> XYZ, as scikit-image's `rgb2lab`.


def _to_linear(rgb, xp=jnp):
  return xp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def _lab_f(t, xp=jnp):
  return xp.where(t > (6 / 29) ** 3, xp.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
  """sRGB in [0, 1] [..., 3] -> CIE Lab [..., 3] (D65 white, as scikit-image's `rgb2lab`, which the reference uses):
  L in [0, 100], a and b roughly in [-110, 110]."""
  xyz = jnp.matmul(_to_linear(rgb), _RGB_TO_XYZ.T, precision=HIGHEST) / _WHITE
  f = _lab_f(xyz)
  return jnp.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
  """The inverse of `rgb_to_lab`, clipped to [0, 1] (a predicted ab can leave the gamut at the given L)."""
  fy = (lab[..., 0] + 16) / 116
  f = jnp.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
  xyz = jnp.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
  linear = jnp.clip(jnp.matmul(xyz, np.linalg.inv(_RGB_TO_XYZ).T.astype(np.float32), precision=HIGHEST), 0.0, 1.0)
  return jnp.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)


@functools.cache
def ab_bins(grid: int) -> np.ndarray:
  """float32 [Q, 2]: the centres (multiples of `grid`) of the ab cells of side `grid` that at least one of the
  2^24 8-bit sRGB colours falls in (nearest centre), ordered by a, then b. Q = 261 for grid 10."""
  levels = np.arange(256, dtype=np.float32) / 255
  linear = _to_linear(levels, np)
  green, blue = np.meshgrid(linear, linear, indexing="ij")
  cells = set()
  for red in linear:  # One red level at a time: 65536 colours.
    xyz = red * _RGB_TO_XYZ[:, 0, None, None] + green * _RGB_TO_XYZ[:, 1, None, None]
    xyz = (xyz + blue * _RGB_TO_XYZ[:, 2, None, None]) / _WHITE[:, None, None]
    f = _lab_f(xyz, np)
    a, b = 500 * (f[0] - f[1]), 200 * (f[1] - f[2])
    cells.update(zip(*(np.round(v / grid).astype(int).ravel().tolist() for v in (a, b)), strict=True))
  return np.array(sorted(cells), np.float32) * grid


def soft_encode(ab: jax.Array, bins: jax.Array, neighbours: int, sigma: float) -> jax.Array:
  """ab [..., 2] -> [..., Q]: weights exp(-d^2 / (2 sigma^2)) on the `neighbours` nearest bins (d: the distance to
  each), normalised to sum to 1, zero elsewhere (the reference's `NNEncode`). Dense over the bins (no scatter, so a
  batch-sharded input stays sharded); bins tied with the `neighbours`-th nearest are all kept (a gray pixel with 10
  neighbours keeps 13: the 4 at distance 20 weigh e^-8 each)."""
  squared = jnp.sum(jnp.square(ab[..., None, :] - bins), axis=-1)  # [..., Q]
  kth = -jax.lax.top_k(-squared, neighbours)[0][..., -1:]
  kernel = jnp.where(squared <= kth, jnp.exp(-(squared - jnp.min(squared, -1, keepdims=True)) / (2 * sigma**2)), 0.0)
  return kernel / jnp.sum(kernel, axis=-1, keepdims=True)


def nearest_bin(ab: jax.Array, bins: jax.Array) -> jax.Array:
  """ab [..., 2] -> int32 [...]: the index of the nearest bin."""
  return jnp.argmin(jnp.sum(jnp.square(ab[..., None, :] - bins), axis=-1), axis=-1).astype(jnp.int32)


def rebalancing_weights(
  counts: np.ndarray, bins: np.ndarray, prior_sigma: float, uniform_mix: float
) -> tuple[np.ndarray, np.ndarray]:
  """Zhang et al.'s class rebalancing. counts [Q]: how often each bin is the nearest to a training pixel.

  Returns (p [Q]: the empirical distribution, smoothed by a Gaussian of std `prior_sigma` over the bin centres
  and renormalised; w [Q]: ((1 - lambda) p + lambda / Q)^-1 scaled so that sum(p w) = 1), lambda = uniform_mix. The
  paper's lambda / Q over every bin: the reference's `PriorFactor` spreads lambda over the bins with p > 0 only,
  the same once p is smoothed, but unsmoothed it would give a bin missing from the counted images weight 0."""
  p = np.asarray(counts, np.float64) / max(np.sum(counts), 1)
  if prior_sigma > 0:
    squared = np.sum(np.square(bins[:, None, :].astype(np.float64) - bins[None, :, :]), axis=-1)
    p = np.exp(-squared / (2 * prior_sigma**2)) @ p
    p = p / np.sum(p)
  w = 1.0 / ((1 - uniform_mix) * p + uniform_mix / len(p))
  return p, w / np.sum(p * w)


def bin_counts(source, bins: np.ndarray, num_images: int, seed: int) -> np.ndarray:
  """int64 [Q]: the nearest bin of each subsampled pixel's ab, counted over `num_images` examples of `source`
  (all of them if it has fewer) drawn without replacement by `seed`, read in the loader's chunks."""
  chosen = np.sort(np.random.default_rng(seed).permutation(len(source))[: min(num_images, len(source))])
  counts = np.zeros(len(bins), np.int64)
  nearest = jax.jit(lambda images: nearest_bin(rgb_to_lab(images[:, ::SUBSAMPLE, ::SUBSAMPLE])[..., 1:], bins))
  read = lambda start: source.get(chosen[start : start + data.LOADER_CHUNK])["image"]  # noqa: E731
  for images in data.load_in_order(read, range(0, len(chosen), data.LOADER_CHUNK)):
    counts += np.bincount(np.asarray(nearest(jnp.asarray(images))).ravel(), minlength=len(bins))
  return counts


def annealed_mean(logits: jax.Array, bins: jax.Array, temperature: float) -> jax.Array:
  """[..., Q] logits -> [..., 2] ab: the mean of the distribution re-normalised at temperature T,
  f_T(z) = exp(log z / T) / sum exp(log z / T) = softmax(logits / T) (T = 1: the mean; T -> 0: the mode)."""
  return jax.nn.softmax(logits / temperature, axis=-1) @ bins


def upsample_ab(ab: jax.Array, size: int) -> jax.Array:
  """[N, S/4, S/4, 2] predicted at every 4th pixel (0, 4, 8, ...: where the targets were sampled) -> [N, S, S, 2],
  linear between those pixels and constant past the last (a plain resize would put each prediction at the centre
  of its 4 x 4 block, 1.5 px away from the pixel it was trained on)."""
  samples = ab.shape[1]
  position = np.minimum(np.arange(size) / SUBSAMPLE, samples - 1)
  weights = np.stack([np.interp(position, np.arange(samples), unit) for unit in np.eye(samples)], -1)  # [S, S/4]
  weights = weights.astype(np.float32)
  return jnp.einsum("ps,nstc,qt->npqc", weights, ab, weights, precision=HIGHEST)


def centred_lightness(lab: jax.Array) -> jax.Array:
  """Lab [..., 3] -> the network's input [..., 1]: (L - 50) / 50."""
  return (lab[..., :1] - 50.0) / 50.0


def lightness_input(images: jax.Array) -> jax.Array:
  """RGB [N, S, S, 3] in [0, 1] -> the network's input [N, S, S, 1]."""
  return centred_lightness(rgb_to_lab(images))


class Colorizer(nn.Module):
  """A trunk's last feature map -> ab-bin logits at a quarter of the input's side.

  inputs: {"image": L input [N, S, S, 1] (`lightness_input`), "ab": the subsampled target ab [N, S/4, S/4, 2]}
  (passed through to the outputs); outputs also "features" (the map's mean, what the probe and evaluation read)
  and "logits" [N, S/4, S/4, Q]."""

  encoder: nn.Module  # A ResNet with pool=False.
  num_bins: int
  upsamplings: int  # Stride-2 transposed convolutions from the trunk's stride to 4.
  head_width: int = 256

  @nn.compact
  def logits(self, lightness, train: bool = False):
    feature_map = self.encoder(lightness, train=train)
    x = feature_map
    for index in range(self.upsamplings):
      x = nn.relu(nn.ConvTranspose(self.head_width, (4, 4), strides=(2, 2), padding="SAME", name=f"up{index}")(x))
    for index in range(2):
      x = nn.relu(nn.Conv(self.head_width, (3, 3), name=f"conv{index}")(x))
    return jnp.mean(feature_map, axis=(1, 2)), nn.Conv(self.num_bins, (1, 1), name="bins")(x).astype(jnp.float32)

  def __call__(self, inputs, train: bool = True):
    features, logits = self.logits(inputs["image"], train)
    return {"features": features, "logits": logits, "ab": inputs["ab"]}

  def colorize(self, images):
    """RGB images [N, S, S, 3] -> ab-bin logits [N, S/4, S/4, Q] from their lightness, in inference mode."""
    return self.logits(lightness_input(images))[1]

  def encode(self, images):
    return jnp.mean(self.encoder(lightness_input(images), train=False), axis=(1, 2))


def make_inputs(batch, key, view):
  lab = rgb_to_lab(augment.single_view(batch, key, view))
  return {
    "image": centred_lightness(lab),
    "ab": lab[:, ::SUBSAMPLE, ::SUBSAMPLE, 1:],
    "label": batch["label"],
  }


def colorization_loss(outputs, batch, step, bins, weights, settings):
  del batch, step
  if weights is None:
    raise ConfigError(
      "colorization: no class-rebalancing weights; training needs the training set's colour distribution "
      "(build_trainer(..., train_source=...))"
    )
  ab = outputs["ab"]
  targets = soft_encode(ab, bins, settings.neighbours, settings.sigma)
  colourful = jnp.any(jnp.abs(ab) > settings.gray_threshold, axis=(1, 2, 3))  # [N]: the non-gray mask.
  location_weights = jnp.asarray(weights, jnp.float32)[jnp.argmax(targets, -1)] * colourful[:, None, None]
  loss = losses.rebalanced_cross_entropy(outputs["logits"], targets, location_weights)
  hits = jnp.mean(jnp.argmax(outputs["logits"], -1) == jnp.argmax(targets, -1), axis=(1, 2))  # [N]
  accuracy = jnp.sum(hits * colourful) / jnp.maximum(jnp.sum(colourful), 1)  # Over the images the loss counts.
  metrics = {"bin_accuracy": accuracy, "colourful_images": jnp.mean(colourful)}
  return loss, {**metrics, "embedding_std": losses.embedding_std(outputs["features"])}


def check_settings(config):
  """ConfigError naming the first key of `config.colorization` (or the dataset, model or augmentation) that
  cannot train a colorizer."""
  settings = config.colorization
  require = {
    "grid": 1 <= settings.grid <= 50,
    "neighbours": 1 <= settings.neighbours <= len(ab_bins(settings.grid)) if 1 <= settings.grid <= 50 else True,
    "sigma": settings.sigma > 0,
    "prior_sigma": settings.prior_sigma >= 0,
    "uniform_mix": 0 < settings.uniform_mix <= 1,
    "prior_images": settings.prior_images >= 1,
    "gray_threshold": settings.gray_threshold >= 0,
    "temperature": settings.temperature > 0,
    "head_width": settings.head_width >= 1,
  }
  for key, ok in require.items():
    if not ok:
      raise ConfigError(
        f"config.colorization.{key}: {settings[key]!r} is invalid (1 <= grid <= 50, 1 <= neighbours <= the number "
        "of bins, sigma and temperature > 0, prior_sigma and gray_threshold >= 0, 0 < uniform_mix <= 1, prior_images"
        " and head_width >= 1)"
      )
  if config.dataset.channels != 3:
    raise ConfigError(
      f"config.dataset.channels: colorization needs colour (RGB) images, not {config.dataset.channels} channel(s)"
    )
  if config.model.name != "resnet":
    raise ConfigError(f"config.model.name: colorization predicts from a ResNet's feature map, not {config.model.name}")
  for key in ("jitter_prob", "grayscale_prob", "solarize_prob"):
    if config.augment.get(key, 0.0):
      raise ConfigError(f"config.augment.{key}: {config.augment[key]} would change the colours colorization predicts")
  refuse_encoder_training(config, "a colorizer's encoder reads L alone")


def build(config, info) -> Method:
  check_settings(config)
  settings = config.colorization
  size = config.dataset.image_size
  encoder = models.build_encoder(config.model, size, jnp.dtype(config.dtype))
  if size % encoder.downsampling:
    raise ConfigError(
      f"config.dataset.image_size: {size} px is not a multiple of the ResNet's total stride {encoder.downsampling}"
    )
  bins = ab_bins(settings.grid)
  weights = None  # Without the training set (evaluation, a pretrained model's loading) nothing trains.
  if info.train_source is not None:
    counts = bin_counts(info.train_source, bins, settings.prior_images, config.seed)
    weights = rebalancing_weights(counts, bins, settings.prior_sigma, settings.uniform_mix)[1].astype(np.float32)
  view = augment.AugmentConfig(size=size, **config.augment)
  model = Colorizer(
    encoder.clone(pool=False), len(bins), int(np.log2(encoder.downsampling // SUBSAMPLE)), settings.head_width
  )
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, view=view),
    loss=functools.partial(colorization_loss, bins=jnp.asarray(bins), weights=weights, settings=settings),
    views_per_image=1,
    crops=(view,),
    encoder_input=jax.jit(lightness_input),
  )
