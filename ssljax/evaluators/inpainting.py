"""A context encoder's held-out inpainting: the squared error per dropped pixel on the test split (holes fixed by
`seed`) against filling the hole with the training split's mean image, and a PNG grid (original | the encoder's
input | the completion pasted into the hole)."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, paths
from ssljax.config import ConfigError
from ssljax.evaluators.autoencoder_pictures import training_mean_image
from ssljax.evaluators.reconstruction import tile
from ssljax.methods.context_encoder import drop_masks, with_hole


def run(context, num_images: int = 16, seed: int = 0) -> dict:
  """{"inpainting/ssl/hole_mse", "inpainting/mean_image/hole_mse"}; writes WORKDIR/inpainting.png (and to
  TensorBoard)."""
  config = context.config
  if config.method != "context_encoder":
    raise ConfigError(f"config.evals: the inpainting evaluator needs method 'context_encoder', not {config.method!r}")
  settings = config.context_encoder

  @jax.jit
  def complete(variables, images, labels, key, valid, mean_image):
    """The batch's holes, the encoder's input, the completion, and [the model's and the mean image's summed
    squared error over the dropped values, the number of dropped values] (padding rows count 0)."""
    dropped = drop_masks(key, images.shape[0], images.shape[1], settings.mask, settings.hole_size, settings.num_blocks)
    hole_input = with_hole(images, dropped)
    _, mean, _ = context.model.apply(variables, hole_input, labels, method="posterior")
    completion = context.model.apply(variables, mean, labels, method="decode")
    counted = dropped * (jnp.arange(images.shape[0]) < valid)[:, None, None, None]
    sums = jnp.stack(
      [
        jnp.sum(counted * jnp.square(completion - images)),
        jnp.sum(counted * jnp.square(mean_image - images)),
        jnp.sum(counted) * images.shape[-1],
      ]
    )
    return dropped, hole_input, completion, sums

  mean_image = training_mean_image(context)
  sums = np.zeros(3)
  first = None
  for index, (batch, valid) in enumerate(
    data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding)
  ):
    key = jax.random.fold_in(jax.random.key(seed), index)
    dropped, hole_input, completion, batch_sums = complete(
      context.variables, batch["image"], batch["label"], key, valid, mean_image
    )
    sums += np.asarray(batch_sums, np.float64)
    if first is None:
      first = jax.device_get([x[:num_images] for x in (batch["image"], dropped, hole_input, completion)])

  images, dropped, hole_input, completion = first
  pasted = images * (1 - dropped) + completion * dropped
  grid = tile(np.concatenate([images, hole_input, pasted], axis=2))
  zoom = max(1, 48 // config.dataset.image_size)  # Small images (digits' 16 px) enlarged, nearest neighbour.
  grid = grid.repeat(zoom, 0).repeat(zoom, 1)
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / "inpainting.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, "inpainting", grid)
  return {"inpainting/ssl/hole_mse": sums[0] / sums[2], "inpainting/mean_image/hole_mse": sums[1] / sums[2]}
