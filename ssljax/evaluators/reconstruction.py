"""MAE's held-out reconstruction: masked-patch loss on the test split against the predict-the-mean-patch
baseline, and a PNG grid (original | masked | reconstruction with the visible patches pasted back)."""

import einops
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, losses, paths
from ssljax.config import ConfigError
from ssljax.models import patchify, unpatchify


def _normalized_patches(patches, norm_pix: bool):
  """The loss's target: patches, normalised per patch as in `losses.mae_loss` when `norm_pix`."""
  if not norm_pix:
    return patches
  mean, std = losses.patch_statistics(patches)
  return (patches - mean) / std


def reconstruction_triplets(images, pred, mask, patch_size: int, norm_pix: bool):
  """[N, H, 3 W, C] in [0, 1]: per image the original, the masked input (removed patches grey) and the
  prediction for the removed patches with the visible ones pasted back. With `norm_pix`, predictions are mapped
  back to pixels with the true patch's mean and variance (the model predicts normalised patches)."""
  target = patchify(images, patch_size)
  if norm_pix:
    mean, std = losses.patch_statistics(target)
    pred = pred * std + mean
  removed = mask[..., None]
  masked = unpatchify(target * (1 - removed) + 0.5 * removed, patch_size)
  pasted = unpatchify(target * (1 - removed) + pred * removed, patch_size)
  return jnp.clip(jnp.concatenate([images, masked, pasted], axis=2), 0, 1)


def tile(triplets, columns: int = 4) -> np.ndarray:
  """uint8 grid of [N, H, W, C] tiles, `columns` per row, each framed by a 1 px white border."""
  tiles = np.pad(np.asarray(triplets), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0)
  columns = min(columns, len(tiles))
  missing = -len(tiles) % columns
  tiles = np.concatenate([tiles, np.ones((missing, *tiles.shape[1:]), tiles.dtype)])
  grid = einops.rearrange(tiles, "(r c) h w ch -> (r h) (c w) ch", c=columns)
  return (grid * 255).round().astype(np.uint8)


def training_mean_patch(source, batch_size: int, batch_sharding, patch_size: int, norm_pix: bool):
  """The baseline's prediction: for every patch position, the mean (normalised) patch of the training split at
  that position [L, patch_dim], summed one evaluation batch at a time (the split is never in memory at once)."""

  @jax.jit
  def batch_sum(images, valid):
    patches = _normalized_patches(patchify(images, patch_size), norm_pix)
    return jnp.sum(patches * (jnp.arange(images.shape[0]) < valid)[:, None, None], axis=0)  # Padding counts 0.

  batches = data.eval_batches(source, batch_size, batch_sharding)
  total = sum(batch_sum(batch["image"], valid) for batch, valid in batches)
  return total / len(source)


def run(context, num_images: int = 16, mask_ratio: float | None = None, seed: int = 0) -> dict:
  """{"reconstruction/ssl/masked_mse", "reconstruction/mean_patch/masked_mse"} on the test split, masks fixed by
  `seed`; writes WORKDIR/reconstructions.png (and to TensorBoard)."""
  config = context.config
  if config.method != "mae":
    raise ConfigError(f"config.evals: the reconstruction evaluator needs method 'mae', not {config.method!r}")
  norm_pix, patch_size = config.mae.norm_pix, config.model.patch_size
  apply = jax.jit(
    lambda variables, images, rng: context.model.apply(
      variables, images, train=False, mask_ratio=mask_ratio, rngs={"masking": rng}
    )
  )
  mean_patch = training_mean_patch(
    context.train_source, config.eval_batch_size, context.batch_sharding, patch_size, norm_pix
  )

  sums = {"ssl": 0.0, "mean_patch": 0.0}
  masked_patches = 0.0
  first = None
  rng = jax.random.key(seed)
  for index, (batch, valid) in enumerate(
    data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding)
  ):
    outputs = apply(context.variables, batch["image"], jax.random.fold_in(rng, index))
    weights = outputs["mask"] * (jnp.arange(outputs["mask"].shape[0]) < valid)[:, None]  # Padding counts 0.
    count = float(jnp.sum(weights))
    baseline = jnp.broadcast_to(mean_patch, outputs["target"].shape)
    sums["ssl"] += count * float(losses.mae_loss(outputs["pred"], outputs["target"], weights, norm_pix))
    sums["mean_patch"] += count * float(losses.mae_loss(baseline, outputs["target"], weights, norm_pix))
    masked_patches += count
    if first is None:
      first = jax.device_get((batch["image"][:num_images], outputs["pred"][:num_images], outputs["mask"][:num_images]))

  grid = tile(reconstruction_triplets(*first, patch_size, norm_pix))
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / "reconstructions.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, "reconstructions", grid)
  return {f"reconstruction/{name}/masked_mse": total / masked_patches for name, total in sums.items()}
