"""Context prediction (Doersch et al. 2015): the centre patch of a 3 x 3 grid (gaps and jitter between the
patches) and one of its 8 neighbours, both through one encoder; the network names where the neighbour lies."""

import functools

import jax
import jax.numpy as jnp

from ssljax.methods import pretext

SCHEMA = pretext.GRID_SCHEMA

CENTRE = 4
# The neighbours' grid positions in raster order; label k: position NEIGHBOURS[k] (0 top left, 1 top, 2 top right,
# 3 left, 4 right, 5 bottom left, 6 bottom, 7 bottom right of the centre).
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)


def centre_and_neighbour(views, key, patch: int, gap: int, jitter: int, normalize: bool):
  """[N, S, S, C] -> {"parts": [N, 2, patch, patch, C] (the centre patch, then the neighbour), "target": [N]}."""
  grid_key, choice_key = jax.random.split(key)
  patches = pretext.per_image(functools.partial(pretext.grid_patches, patch=patch, gap=gap, jitter=jitter))(
    views, grid_key
  )
  target = jax.random.randint(choice_key, (views.shape[0],), 0, len(NEIGHBOURS))
  neighbour = jnp.take_along_axis(patches, jnp.asarray(NEIGHBOURS)[target][:, None, None, None, None], axis=1)
  pairs = jnp.concatenate([patches[:, CENTRE : CENTRE + 1], neighbour], axis=1)
  return {"parts": pretext.normalize_parts(pairs) if normalize else pairs, "target": target}


def build(config, info):
  del info  # Nothing run-dependent.
  settings = config.context_prediction
  pretext.check_grid(settings, "config.context_prediction")
  cut = functools.partial(
    centre_and_neighbour,
    patch=settings.patch_size,
    gap=settings.gap,
    jitter=settings.jitter,
    normalize=settings.normalize_parts,
  )
  return pretext.build_pretext(config, settings, len(NEIGHBOURS), settings.view_size, settings.patch_size, cut)
