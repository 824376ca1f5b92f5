"""Evaluator plumbing: fine-tuning starts from the pretrained encoder, reconstruction grids paste visible patches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mae_digits
from ssljax import data
from ssljax.config import ConfigError
from ssljax.evaluators import finetune, reconstruction
from ssljax.models import patchify, unpatchify
from ssljax.train_step import build_trainer, encoder_variables


def test_finetune_state_starts_from_the_pretrained_encoder(mesh8):
  config = mae_digits.get_config("runlocal")
  source = data.load_source(config.dataset, "train")
  pretrained = build_trainer(config, mesh8, len(source), 10).make_state(3)
  encoder = encoder_variables({"params": pretrained.params})
  settings = dict(config.evals.finetune.to_dict())
  ft_config = finetune.finetune_config(config, 100, settings)
  assert (ft_config.method, ft_config.model.pool, ft_config.online_probe) == ("supervised", "mean", False)
  assert ft_config.batch_size == 96  # 128 capped to the 100 examples, rounded down to the 8 devices.
  assert ft_config.optimizer.warmup_steps == round(5 * 100 / 96)
  fresh = build_trainer(ft_config, mesh8, 100, 10).make_state(0).params["encoder"]
  merged = finetune._merge(fresh, encoder["params"])
  # Everything the pretrained encoder has is copied over; MAE's final norm is dropped, fc_norm stays fresh.
  jax.tree.map(np.testing.assert_array_equal, merged["transformer"], encoder["params"]["transformer"])
  np.testing.assert_array_equal(merged["cls_token"], encoder["params"]["cls_token"])
  assert "norm" not in merged and merged["fc_norm"] is fresh["fc_norm"]
  assert not np.array_equal(fresh["patch_embed"]["kernel"], merged["patch_embed"]["kernel"])
  # Copies, not aliases: donating the fine-tune state must not free the pretrained arrays.
  pointers = [s.data.unsafe_buffer_pointer() for s in encoder["params"]["cls_token"].addressable_shards]
  assert not {s.data.unsafe_buffer_pointer() for s in merged["cls_token"].addressable_shards} & set(pointers)
  with pytest.raises(ConfigError, match="fewer than the 8 devices"):
    finetune.finetune_config(config, 5, settings)


def test_reconstruction_grid_pastes_the_visible_patches():
  images = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  mask = jnp.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
  pred = jnp.zeros((2, 4, 16))
  rows = reconstruction.reconstruction_triplets(images, pred, mask, 4, norm_pix=False)
  assert rows.shape == (2, 8, 24, 1)
  original, masked, pasted = rows[:, :, :8], rows[:, :, 8:16], rows[:, :, 16:]
  np.testing.assert_allclose(original, images, atol=1e-6)
  removed = unpatchify(jnp.broadcast_to(mask[..., None], (2, 4, 16)), 4)
  np.testing.assert_allclose(pasted, np.where(removed, 0.0, images), atol=1e-6)
  np.testing.assert_allclose(masked, np.where(removed, 0.5, images), atol=1e-6)
  # With norm_pix, a prediction of 0 (the normalised mean) maps back to each true patch's mean.
  normed = reconstruction.reconstruction_triplets(images, pred, mask, 4, norm_pix=True)
  patch_means = patchify(images, 4).mean(-1, keepdims=True)
  expected = unpatchify(jnp.where(mask[..., None] > 0, patch_means, patchify(images, 4)), 4)
  np.testing.assert_allclose(normed[:, :, 16:], expected, atol=1e-6)
  # Tiled 4 per row with 1 px borders; the 2 missing tiles of the row are white.
  grid = reconstruction.tile(np.concatenate([rows] * 3), columns=4)
  assert grid.shape == (2 * 10, 4 * 26, 1) and grid.dtype == np.uint8
  np.testing.assert_allclose(grid[11:19, 27:51] / 255, rows[1], atol=1 / 255)  # Tile 5 = row 1, column 1.
  assert np.all(grid[10:, 52:] == 255)
