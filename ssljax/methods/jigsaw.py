"""Jigsaw puzzles (Noroozi & Favaro 2016): a 3 x 3 grid of tiles (gaps and jitter between them, each normalised on
its own) shuffled by one permutation of a fixed set, through one shared tile encoder; the network names the
permutation."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.config import ConfigError
from ssljax.methods import pretext

SCHEMA = {**pretext.GRID_SCHEMA, "num_permutations": int, "permutation_seed": int}

TILES = pretext.GRID * pretext.GRID


@functools.cache
def maximal_hamming_permutations(count: int, size: int = TILES, seed: int = 0) -> np.ndarray:
  """The paper's permutation set (Algorithm 1, "maximal"): int [count, size], greedy from one random permutation,
  each next one the permutation whose summed Hamming distance to those already chosen is largest (ties: the
  first in lexicographic order). Row p: tile p[k] of the solved puzzle goes to position k."""
  candidates = np.array(list(itertools.permutations(range(size))), dtype=np.int8)
  if not 1 <= count <= len(candidates):
    raise ConfigError(f"config.jigsaw.num_permutations: {count} is not in [1, {len(candidates)}]")
  chosen = [int(np.random.default_rng(seed).integers(len(candidates)))]
  summed = np.zeros(len(candidates), np.int64)
  for _ in range(count - 1):
    summed += (candidates != candidates[chosen[-1]]).sum(axis=1)
    summed[chosen] = -1  # Already in the set.
    chosen.append(int(np.argmax(summed)))
  return candidates[chosen]


def shuffle_tiles(views, key, permutations, patch: int, gap: int, jitter: int, normalize: bool):
  """[N, S, S, C] -> {"parts": [N, 9, patch, patch, C] (position k holds tile p[k]), "target": [N] (p's row)}."""
  grid_key, choice_key = jax.random.split(key)
  tiles = pretext.per_image(functools.partial(pretext.grid_patches, patch=patch, gap=gap, jitter=jitter))(
    views, grid_key
  )
  target = jax.random.randint(choice_key, (views.shape[0],), 0, permutations.shape[0])
  shuffled = jnp.take_along_axis(tiles, jnp.asarray(permutations)[target][:, :, None, None, None], axis=1)
  return {"parts": pretext.normalize_parts(shuffled) if normalize else shuffled, "target": target}


def build(config, info):
  del info  # Nothing run-dependent.
  settings = config.jigsaw
  pretext.check_grid(settings, "config.jigsaw")
  permutations = maximal_hamming_permutations(settings.num_permutations, TILES, settings.permutation_seed)
  cut = functools.partial(
    shuffle_tiles,
    permutations=permutations,
    patch=settings.patch_size,
    gap=settings.gap,
    jitter=settings.jitter,
    normalize=settings.normalize_parts,
  )
  return pretext.build_pretext(config, settings, len(permutations), settings.view_size, settings.patch_size, cut)
