"""MAE (He et al. 2022): mask most patches of one lightly augmented view, reconstruct their pixels."""

import functools

import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.methods import Method


def reconstruction_loss(outputs, batch, step, norm_pix: bool):
  del batch, step  # The target is the model's own (augmented) input, patchified.
  return losses.mae_loss(outputs["pred"], outputs["target"], outputs["mask"], norm_pix), {}


def build(config, info) -> Method:
  del info  # Nothing run-dependent.
  mae = config.mae
  if not 0.0 < mae.mask_ratio < 1.0:
    raise ConfigError(f"config.mae.mask_ratio: {mae.mask_ratio} is not in (0, 1)")
  if config.model.name != "vit" or config.model.get("pool", "cls") != "cls":
    raise ConfigError("config.model: MAE needs a ViT encoder with pool='cls'")
  dtype = jnp.dtype(config.dtype)
  size = config.dataset.image_size
  encoder = models.build_encoder(config.model, size, dtype)
  decoder = models.MAEDecoder(
    width=mae.decoder_width,
    depth=mae.decoder_depth,
    num_heads=mae.decoder_heads,
    patch_dim=encoder.patch_size**2 * config.dataset.channels,
    dtype=dtype,
  )
  view = augment.AugmentConfig(size=size, **config.augment)
  return Method(
    model=models.MaskedAutoencoder(encoder, decoder, mae.mask_ratio),
    make_inputs=functools.partial(augment.single_view, config=view),
    loss=functools.partial(reconstruction_loss, norm_pix=mae.norm_pix),
    views_per_image=1,
    crops=(view,),
  )
