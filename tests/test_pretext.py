"""The classification pretext tasks (rotation, jigsaw, context prediction): their labels tested exactly against the
transformation they name, the jigsaw permutation set against its greedy rule, the grid's geometry, the shared
model and the config errors. The shared step runs them in tests/test_methods.py (8 devices == 1, NaN, resume)."""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import context_prediction_digits, jigsaw_digits, rotation_digits
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, build_method, context_prediction, jigsaw, pretext, rotation

SIZE, PATCH, GAP, JITTER = 32, 8, 2, 1


def _coordinates(n: int, size: int = SIZE):
  """Views whose pixel (r, c) of image i holds (r, c, i): any cut part tells where it came from."""
  rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  image = np.stack([rows, columns], -1).astype(np.float32)
  return jnp.asarray(np.stack([np.concatenate([image, np.full((size, size, 1), i, np.float32)], -1) for i in range(n)]))


def _cells(parts, patch: int = PATCH, gap: int = GAP):
  """The grid cell (raster index) each part [..., patch, patch, 3] of `_coordinates` was cut from, and its corner."""
  corners = np.asarray(parts[..., 0, 0, :2]).astype(int)
  cells = np.round((corners - corners.min(axis=-2, keepdims=True)) / (patch + gap)).astype(int)
  return cells[..., 0] * 3 + cells[..., 1], corners


def test_rotating_an_image_by_k_quarter_turns_gives_label_k():
  views = jax.random.uniform(jax.random.key(0), (5, 8, 8, 3))
  out = jax.jit(rotation.rotate_all)(views, jax.random.key(1))
  assert out["parts"].shape == (20, 1, 8, 8, 3)
  for k in range(4):
    np.testing.assert_array_equal(out["target"][5 * k : 5 * k + 5], k)
    # k counter-clockwise quarter turns: the top-right corner moves to the top-left once per turn.
    np.testing.assert_array_equal(out["parts"][5 * k : 5 * k + 5, 0], np.rot90(np.asarray(views), k, axes=(1, 2)))
  corner = np.asarray(views)[:, 0, -1]
  np.testing.assert_array_equal(out["parts"][5:10, 0, 0, 0], corner)


def test_grid_patches_are_exact_cuts_with_gaps_and_bounded_jitter():
  views = _coordinates(64)
  cut = functools.partial(pretext.grid_patches, patch=PATCH, gap=GAP, jitter=JITTER)
  patches = jax.jit(pretext.per_image(cut))(views, jax.random.key(0))
  assert patches.shape == (64, 9, PATCH, PATCH, 3)
  cells, corners = _cells(patches)
  np.testing.assert_array_equal(cells, np.tile(np.arange(9), (64, 1)))  # Raster order.
  for image in range(64):
    for k, (top, left) in enumerate(corners[image]):
      np.testing.assert_array_equal(patches[image, k], views[image, top : top + PATCH, left : left + PATCH])
  # Nominal spacing patch + gap, each patch moved by at most `jitter` per axis: neighbours are gap +- 2 x jitter
  # apart, and every offset in [-jitter, jitter] occurs.
  grid = corners.reshape(64, 3, 3, 2)
  steps = np.concatenate([np.diff(grid[..., 0], axis=1).ravel(), np.diff(grid[..., 1], axis=2).ravel()])
  assert set(steps) == set(range(PATCH + GAP - 2 * JITTER, PATCH + GAP + 2 * JITTER + 1))
  assert corners.min() >= 0 and corners.max() + PATCH <= SIZE


def test_each_jigsaw_label_names_the_permutation_applied_to_the_tiles():
  permutations = jigsaw.maximal_hamming_permutations(24)
  cut = functools.partial(
    jigsaw.shuffle_tiles, permutations=permutations, patch=PATCH, gap=GAP, jitter=JITTER, normalize=False
  )
  out = jax.jit(cut)(_coordinates(256), jax.random.key(3))
  assert out["parts"].shape == (256, 9, PATCH, PATCH, 3)
  sources, _ = _cells(out["parts"])  # Position k of the puzzle holds tile sources[k] of the solved grid.
  np.testing.assert_array_equal(sources, permutations[np.asarray(out["target"])])
  assert len(set(np.asarray(out["target"]).tolist())) == 24  # Labels uniform over the set: all drawn.
  np.testing.assert_array_equal(out["parts"][:, 0, 0, 0, 2], np.arange(256))  # Each image's own tiles.


def test_jigsaw_tiles_are_normalised_one_by_one():
  views = jax.random.uniform(jax.random.key(0), (4, SIZE, SIZE, 3)) * jnp.arange(1, 5)[:, None, None, None]
  permutations = jigsaw.maximal_hamming_permutations(10)
  cut = functools.partial(
    jigsaw.shuffle_tiles, permutations=permutations, patch=PATCH, gap=GAP, jitter=JITTER, normalize=True
  )
  tiles = np.asarray(cut(views, jax.random.key(0))["parts"], np.float64)
  np.testing.assert_allclose(tiles.mean(axis=(2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(tiles.std(axis=(2, 3)), 1.0, rtol=1e-4)


def _summed_distances(candidates, chosen):
  return np.array([sum(int((c != candidates[j]).sum()) for j in chosen) for c in candidates])


def test_permutation_set_follows_the_papers_greedy_maximal_hamming_rule():
  """Algorithm 1 of Noroozi & Favaro, checked by brute force on permutations of 5: every next permutation has the
  largest summed Hamming distance to those chosen before it (ties: the first in lexicographic order)."""
  chosen = jigsaw.maximal_hamming_permutations(30, size=5, seed=1)
  candidates = np.array(list(itertools.permutations(range(5))))
  indices = [int(np.flatnonzero((candidates == row).all(axis=1))[0]) for row in chosen]
  assert len(set(indices)) == 30
  for i in range(1, 30):
    summed = _summed_distances(candidates, indices[:i])
    summed[indices[:i]] = -1
    assert indices[i] == int(np.argmax(summed)), i
  assert (chosen[0] != chosen[1]).sum() == 5  # The second is a derangement of the first.
  np.testing.assert_array_equal(jigsaw.maximal_hamming_permutations(30, size=5, seed=1), chosen)  # Deterministic.


def test_shipped_permutation_set_is_far_apart():
  """The digits config's 100 permutations of 9 tiles: distinct permutations whose pairwise distances average above a
  random pair's 8 (9 minus one expected fixed point): 8.08. The rule maximises the average, not the minimum, which
  here is 2 (two tiles swapped)."""
  perms = jigsaw.maximal_hamming_permutations(100)
  assert perms.shape == (100, 9) and (np.sort(perms, axis=1) == np.arange(9)).all()
  distances = (perms[:, None] != perms[None]).sum(-1)[np.triu_indices(100, 1)]
  assert distances.mean() == pytest.approx(8.08) and distances.min() == 2, (distances.mean(), distances.min())


def test_each_context_label_names_where_the_neighbour_lies():
  cut = functools.partial(context_prediction.centre_and_neighbour, patch=PATCH, gap=GAP, jitter=JITTER, normalize=False)
  out = jax.jit(cut)(_coordinates(256), jax.random.key(5))
  assert out["parts"].shape == (256, 2, PATCH, PATCH, 3)
  corners = np.asarray(out["parts"][:, :, 0, 0, :2]).astype(int)
  direction = np.round((corners[:, 1] - corners[:, 0]) / (PATCH + GAP)).astype(int)  # (rows, columns) from centre.
  expected = np.array([divmod(p, 3) for p in context_prediction.NEIGHBOURS]) - 1  # Label k's (row, column) offset.
  np.testing.assert_array_equal(direction, expected[np.asarray(out["target"])])
  assert set(np.asarray(out["target"]).tolist()) == set(range(8))
  # The first part is the centre: the grid origin leaves room for gaps and jitter, so it lies in the middle cell.
  assert (corners[:, 0] >= PATCH + GAP - JITTER).all() and (corners[:, 0] <= SIZE - 2 * PATCH - GAP + JITTER).all()


@pytest.mark.parametrize("config_module", (jigsaw_digits, context_prediction_digits))
def test_parts_share_one_encoder_and_features_ignore_their_order(config_module):
  """The parts go through one encoder (a siamese tower); the probe's features average them, so reordering the
  parts changes the logits (the head reads positions) but not the features."""
  config = config_module.get_config("runlocal")
  method = build_method(config, BuildInfo(num_classes=10))
  inputs = method.make_inputs({"image": jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))}, jax.random.key(1))
  variables = method.model.init(jax.random.key(2), inputs, train=False)
  apply = jax.jit(functools.partial(method.model.apply, train=False))
  outputs = apply(variables, inputs)
  reversed_inputs = {**inputs, "parts": inputs["parts"][:, ::-1]}
  np.testing.assert_allclose(apply(variables, reversed_inputs)["features"], outputs["features"], rtol=1e-5, atol=1e-6)
  assert not np.allclose(apply(variables, reversed_inputs)["logits"], outputs["logits"])
  encode = functools.partial(method.model.apply, variables, method="encode")
  parts = [encode(inputs["parts"][:, i]) for i in range(inputs["parts"].shape[1])]
  np.testing.assert_allclose(outputs["features"], np.mean(parts, axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  ("config_module", "override", "message"),
  [
    (jigsaw_digits, {"jigsaw.view_size": 28}, "config.jigsaw: 3 x patch_size + 2 x gap + 2 x jitter = 30 px"),
    (context_prediction_digits, {"context_prediction.gap": -1}, "config.context_prediction: patch_size must be"),
    (jigsaw_digits, {"jigsaw.patch_size": 4, "jigsaw.view_size": 20}, "parts of 4 px are below the ResNet's"),
    (jigsaw_digits, {"jigsaw.num_permutations": 0}, "config.jigsaw.num_permutations: 0 is not in [1, 362880]"),
    (rotation_digits, {"rotation.hidden_dim": -1}, "config.rotation.hidden_dim: -1 is negative"),
    (rotation_digits, {"model": {"name": "vit", "variant": "Ti", "patch_size": 4}}, "needs a ResNet encoder"),
  ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(config_module, override, message):
  config = config_module.get_config("runlocal")
  for key, value in override.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    build_method(config, BuildInfo(num_classes=10))
