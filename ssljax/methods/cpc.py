"""Contrastive predictive coding, v2 (Henaff et al. 2020; lecture 002): the image is a grid of overlapping patches,
each encoded on its own (a ResNet with LayerNorm, so patches share no batch statistics); a masked convolutional
context network summarises the rows at and above each position, and from it linear predictions of the patch
embeddings `k` rows below are scored against every patch embedding of every image in the global batch (InfoNCE,
`losses.cpc_infonce`). The paper also predicts upwards and sideways (its "directions") and augments each patch on
its own; here the rows below only, as CPC v1 and the paper's pseudocode. Evaluation features (`encode`) are the
patch grid's, averaged, as the paper's linear classification."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method

SCHEMA = {
  "view_size": int,  # The augmented view the grid is cut from (px).
  "patch_size": int,
  "patch_stride": int,  # Half the patch: CPC v2's 50% overlap.
  "offsets": tuple,  # The rows ahead that are predicted (CPC v2: 3, skipping the overlapping 1 and 2).
  "context_blocks": int,
  "context_dim": int,
  "target_dim": int,
  "prediction_scale": NUMBER,  # The predictions' scale, the reference's `emb_scale` (0.1).
}


def patch_grid(images, patch: int, stride: int):
  """[N, S, S, C] -> [N, G, G, patch, patch, C], G = (S - patch) // stride + 1: the patches in raster order."""
  size = images.shape[1]
  count = (size - patch) // stride + 1
  index = (jnp.arange(count) * stride)[:, None] + jnp.arange(patch)  # [G, patch] pixel rows of each grid row.
  rows = images[:, index]  # [N, G, patch, S, C]
  return jnp.moveaxis(rows[:, :, :, index], 3, 2)  # [N, G, patch, G, patch, C] -> [N, G, G, patch, patch, C].


class ContextNetwork(nn.Module):
  """CPC v2's autoregressive context network: residual blocks of 1x1, 1x3 (across the row), and a 2x1 convolution
  over the row above and the row itself (the top padded), so the context at row r reads rows <= r only and each
  block reaches one row further up. [N, H, W, D] -> [N, H, W, D]."""

  num_blocks: int = 5
  hidden_dim: int = 256

  @nn.compact
  def __call__(self, z):
    out = z
    for _ in range(self.num_blocks):
      c = nn.relu(nn.Conv(self.hidden_dim, (1, 1))(out))
      c = nn.Conv(self.hidden_dim, (1, 3), padding=((0, 0), (1, 1)))(c)
      c = nn.relu(nn.Conv(self.hidden_dim, (2, 1), padding=((1, 0), (0, 0)))(c))  # Rows r - 1 and r.
      out = out + nn.Conv(z.shape[-1], (1, 1))(c)
    return nn.relu(out)


class CPC(nn.Module):
  """inputs: {"patches": [N, G, G, p, p, C]} -> {"features": [N, F] (the patch features averaged per image, what
  the online probe reads, as `encode`'s), "targets": [N, G, G, target_dim], "predictions": one
  [N, G - k, G, target_dim] per offset k (from the context at row r, for row r + k)}."""

  encoder: nn.Module
  context: nn.Module
  target_dim: int
  offsets: tuple
  prediction_scale: float
  view_size: int
  patch_size: int
  patch_stride: int

  @nn.compact
  def __call__(self, inputs, train: bool = True):
    z = self.patch_features(inputs["patches"], train)
    rows = z.shape[1]
    context = self.context(z)
    predictions = tuple(
      self.prediction_scale * nn.Dense(self.target_dim, name=f"predict_{k}_rows")(context[:, : rows - k])
      for k in self.offsets
    )
    return {
      "features": z.mean(axis=(1, 2)),
      "targets": nn.Dense(self.target_dim, name="to_target")(z),
      "predictions": predictions,
    }

  def patch_features(self, patches, train: bool):
    """[N, G, G, p, p, C] -> [N, G, G, F]: every patch through the encoder on its own."""
    n, rows, columns = patches.shape[:3]
    return self.encoder(patches.reshape(-1, *patches.shape[3:]), train=train).reshape(n, rows, columns, -1)

  def encode(self, images):
    """CPC v2's evaluation features: the whole image resized to the view's side (as a training view at crop
    scale 1), cut into the training grid, the patch features averaged. [N, S, S, C] -> [N, F]."""
    side = images.shape[1]
    views = jax.vmap(lambda image: augment.resize_box(image, 0, 0, side, side, self.view_size))(images)
    patches = patch_grid(views, self.patch_size, self.patch_stride)
    return self.patch_features(patches, train=False).mean(axis=(1, 2))


def cpc_loss(outputs, batch, step, offsets):
  """The InfoNCE of each offset, summed (CPC v2's pseudocode)."""
  del batch, step
  per_offset = {
    f"infonce_{k}_rows": losses.cpc_infonce(p, outputs["targets"], k)
    for k, p in zip(offsets, outputs["predictions"], strict=True)
  }
  metrics = {**per_offset, "embedding_std": losses.embedding_std(outputs["features"])}
  return sum(per_offset.values()), metrics


def build(config, info) -> Method:
  del info  # Nothing run-dependent.
  settings = config.cpc
  if config.model.name != "resnet":
    raise ConfigError("config.model: cpc needs a ResNet encoder (it encodes patches and whole images)")
  if not 1 <= settings.patch_stride <= settings.patch_size <= settings.view_size:
    raise ConfigError(
      f"config.cpc: need 1 <= patch_stride ({settings.patch_stride}) <= patch_size ({settings.patch_size}) <= "
      f"view_size ({settings.view_size})"
    )
  grid = (settings.view_size - settings.patch_size) // settings.patch_stride + 1
  offsets = tuple(settings.offsets)
  if not offsets or any(not isinstance(k, int) or not 1 <= k < grid for k in offsets):
    raise ConfigError(f"config.cpc.offsets: {offsets!r} must be rows ahead in [1, {grid - 1}] (a {grid}-row grid)")
  if min(settings.context_blocks, settings.context_dim, settings.target_dim) < 1 or settings.prediction_scale <= 0:
    raise ConfigError("config.cpc: context_blocks, context_dim, target_dim and prediction_scale must be positive")
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  if settings.patch_size < encoder.downsampling:
    raise ConfigError(
      f"config.cpc.patch_size: {settings.patch_size} px is below the ResNet's total stride {encoder.downsampling}"
    )
  view = augment.AugmentConfig(size=settings.view_size, **config.augment)

  def make_inputs(batch, key):
    images = augment.single_view(batch, key, view)
    return {"patches": patch_grid(images, settings.patch_size, settings.patch_stride)}

  model = CPC(
    encoder,
    ContextNetwork(settings.context_blocks, settings.context_dim),
    settings.target_dim,
    offsets,
    settings.prediction_scale,
    settings.view_size,
    settings.patch_size,
    settings.patch_stride,
  )
  return Method(
    model=model,
    make_inputs=make_inputs,
    loss=functools.partial(cpc_loss, offsets=offsets),
    views_per_image=1,
    crops=(view,),
  )
