"""A colorizer's held-out colours, by Zhang et al.'s (2016) raw accuracy: the area under the cumulative curve of the
per-pixel ab error (Euclidean, in ab units) for thresholds 0 to 150, against giving every pixel ab = 0 (the grayscale
image, the paper's baseline), and a PNG grid (lightness | the annealed-mean colorization | the original)."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, paths
from ssljax.config import ConfigError
from ssljax.evaluators.reconstruction import tile
from ssljax.methods.colorization import ab_bins, annealed_mean, lab_to_rgb, rgb_to_lab, upsample_ab

THRESHOLDS = 151  # The curve's ab error thresholds 0, 1, ..., 150, as the paper's Table 1.


def run(context, num_images: int = 16) -> dict:
  """{"colorization/ssl/auc", "colorization/grayscale/auc"} in [0, 1]; writes WORKDIR/colorization.png (and to
  TensorBoard) of `num_images` test images spread evenly over the split. Colours are the annealed mean
  (config.colorization.temperature) of the quarter-resolution prediction, upsampled bilinearly to the image's side
  (`upsample_ab`), with the image's own L."""
  config = context.config
  if config.method != "colorization":
    raise ConfigError(f"config.evals: the colorization evaluator needs method 'colorization', not {config.method!r}")
  settings = config.colorization
  bins = jnp.asarray(ab_bins(settings.grid))

  @jax.jit
  def colorize(variables, images, valid):
    """The colorized images and, per threshold, [the model's, grayscale's] count of valid pixels within it."""
    lab = rgb_to_lab(images)
    logits = context.model.apply(variables, images, method="colorize")
    ab = upsample_ab(annealed_mean(logits, bins, settings.temperature), images.shape[1])
    counted = jnp.broadcast_to((jnp.arange(images.shape[0]) < valid)[:, None, None], images.shape[:3]).astype(jnp.int32)

    def within(error):  # [T]: valid pixels whose error is at most each threshold t (error <= t iff ceil(error) <= t).
      ceiling = jnp.minimum(jnp.ceil(jnp.linalg.norm(error, axis=-1)), THRESHOLDS).astype(jnp.int32)
      return jnp.cumsum(jax.ops.segment_sum(counted.ravel(), ceiling.ravel(), THRESHOLDS + 1))[:-1]

    counts = jnp.stack([within(ab - lab[..., 1:]), within(lab[..., 1:])])
    return lab_to_rgb(jnp.concatenate([lab[..., :1], ab], -1)), counts, jnp.sum(counted)

  shown = set(np.linspace(0, len(context.test_source) - 1, num_images).astype(int).tolist())  # Spread over the split.
  counts, pixels, pictures, start = np.zeros((2, THRESHOLDS)), 0.0, [], 0
  for batch, valid in data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding):
    colorized, batch_counts, batch_pixels = colorize(context.variables, batch["image"], valid)
    counts += np.asarray(batch_counts, np.float64)
    pixels += float(batch_pixels)
    rows = [i - start for i in range(start, start + valid) if i in shown]
    if rows:
      pictures.append(jax.device_get([x[np.array(rows)] for x in (batch["image"], colorized)]))
    start += valid

  images, colorized = (np.concatenate(parts) for parts in zip(*pictures, strict=True))
  lightness = np.repeat(np.asarray(rgb_to_lab(images))[..., :1] / 100.0, 3, axis=-1)
  grid = tile(np.concatenate([lightness, colorized, images], axis=2))
  zoom = max(1, 96 // config.dataset.image_size)  # Small images enlarged, nearest neighbour.
  grid = grid.repeat(zoom, 0).repeat(zoom, 1)
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / "colorization.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, "colorization", grid)
  auc = counts.mean(axis=1) / pixels
  return {"colorization/ssl/auc": float(auc[0]), "colorization/grayscale/auc": float(auc[1])}
