"""Context encoder (Pathak et al. 2016; lecture 002's inpainting): a region of the image is dropped (filled with
the mean pixel), the encoder sees the rest, and a decoder paints the missing region back, trained with an L2 loss
on that region (and, for the central region, on a band of the context around it, weighted 10x). The adversarial
term of the paper is not here: the reconstruction loss alone, as their feature-learning experiments."""

import functools

import jax
import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method
from ssljax.models.autoencoder import AutoEncoder, ConvDecoder

SCHEMA = {
  "mask": str,  # "center": one central square | "random_blocks": `num_blocks` squares at random places per image.
  "hole_size": int,  # The side (px) of the square (of each square for random_blocks).
  "num_blocks": int,
  "overlap": int,  # Width (px) of the band of visible context around the hole that is also predicted ...
  "overlap_weight": NUMBER,  # ... with this loss weight (the paper: 10 x the hole's).
  "latent_dim": int,
  "decoder_width": int,
}
MASKS = ("center", "random_blocks")


def drop_masks(key, num_images: int, size: int, mask: str, hole_size: int, num_blocks: int) -> jax.Array:
  """float32 [N, S, S, 1], 1 on the dropped pixels: the central `hole_size` square (`key` unused), or the union of
  `num_blocks` squares of that side at uniform positions, drawn per image (Pathak et al.'s random blocks)."""
  rows = jnp.arange(size)
  if mask == "center":
    start = (size - hole_size) // 2
    inside = (rows >= start) & (rows < start + hole_size)
    return jnp.broadcast_to((inside[:, None] & inside[None, :])[None, ..., None], (num_images, size, size, 1)) * 1.0
  corners = jax.random.randint(key, (num_images, num_blocks, 2, 1), 0, size - hole_size + 1)
  inside = (rows >= corners) & (rows < corners + hole_size)  # [N, B, 2 (row, column), S]
  blocks = inside[:, :, 0, :, None] & inside[:, :, 1, None, :]
  return jnp.any(blocks, axis=1)[..., None].astype(jnp.float32)


def loss_weights(dropped: jax.Array, overlap: int, overlap_weight: float) -> jax.Array:
  """[N, S, S, 1]: 1 on the dropped pixels, `overlap_weight` on the visible pixels within `overlap` px of them
  (a square dilation), 0 elsewhere."""
  if not overlap:
    return dropped
  window = (1, 2 * overlap + 1, 2 * overlap + 1, 1)
  near = jax.lax.reduce_window(dropped, 0.0, jax.lax.max, window, (1, 1, 1, 1), "SAME")
  return dropped + overlap_weight * (near - dropped)


def with_hole(images, dropped):
  """The encoder's input: the dropped pixels set to the batch's mean pixel (per channel; the paper: the
  dataset's)."""
  fill = jnp.mean(images, axis=(0, 1, 2))
  return images * (1.0 - dropped) + fill * dropped


def make_inputs(batch, key, view, settings):
  view_key, mask_key = jax.random.split(key)
  clean = augment.single_view(batch, view_key, view)
  dropped = drop_masks(mask_key, clean.shape[0], clean.shape[1], settings.mask, settings.hole_size, settings.num_blocks)
  return {
    "image": with_hole(clean, dropped),
    "target": clean,
    "target_weights": loss_weights(dropped, settings.overlap, settings.overlap_weight),
    "label": batch["label"],
  }


def context_encoder_loss(outputs, batch, step):
  del batch, step
  loss = losses.weighted_l2(outputs["reconstruction"], outputs["target"], outputs["target_weights"])
  return loss, {"embedding_std": losses.embedding_std(outputs["mean"])}


def check_settings(settings, size: int):
  """ConfigError naming the key of the first setting that cannot make a hole in `size` px images."""
  require = {
    "mask": settings.mask in MASKS,
    "hole_size": 1 <= settings.hole_size < size,
    "num_blocks": settings.num_blocks >= 1,
    "overlap": settings.overlap >= 0
    and (settings.mask != "center" or settings.hole_size + 2 * settings.overlap < size),
    "overlap_weight": settings.overlap_weight >= 0,
    "latent_dim": settings.latent_dim >= 1,
    "decoder_width": settings.decoder_width >= 2,
  }
  for key, ok in require.items():
    if not ok:
      raise ConfigError(
        f"config.context_encoder.{key}: {settings[key]!r} is invalid for {size} px images (masks: "
        f"{', '.join(MASKS)}; 1 <= hole_size < image size, the central hole and its overlap band inside the image, "
        "num_blocks, latent_dim >= 1, decoder_width >= 2, overlap and its weight >= 0)"
      )


def build(config, info) -> Method:
  del info  # Nothing run-dependent.
  settings = config.context_encoder
  size = config.dataset.image_size
  check_settings(settings, size)
  if size % 4:
    raise ConfigError(f"config.dataset.image_size: {size} px is not a multiple of 4 (the decoder upsamples twice)")
  view = augment.AugmentConfig(size=size, **config.augment)
  model = AutoEncoder(
    models.build_encoder(config.model, size, jnp.dtype(config.dtype)),
    ConvDecoder(size, config.dataset.channels, settings.decoder_width),
    settings.latent_dim,
  )
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, view=view, settings=settings),
    loss=context_encoder_loss,
    views_per_image=1,
    crops=(view,),
  )
