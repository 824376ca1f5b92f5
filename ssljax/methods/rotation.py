"""Rotation prediction (Gidaris et al. 2018): every image of the batch rotated by 0, 90, 180 and 270 degrees, all
four in the same batch (the paper's best setting), and a 4-way classifier of the rotation."""

import jax.numpy as jnp

from ssljax.methods import pretext

SCHEMA = {"hidden_dim": int}

ROTATIONS = 4


def rotate_all(views, key):
  """[N, S, S, C] -> {"parts": [4N, 1, S, S, C] (rotation-major: all images by 0 degrees, then by 90, ...; k
  quarter turns counter-clockwise), "target": [4N] (k)}."""
  del key  # Every rotation of every image: nothing is drawn.
  rotated = jnp.concatenate([jnp.rot90(views, k, axes=(1, 2)) for k in range(ROTATIONS)])
  return {"parts": rotated[:, None], "target": jnp.repeat(jnp.arange(ROTATIONS), views.shape[0])}


def build(config, info):
  del info  # Nothing run-dependent.
  size = config.dataset.image_size
  return pretext.build_pretext(config, config.rotation, ROTATIONS, size, size, rotate_all, views_per_image=ROTATIONS)
