"""Evaluators: kNN and ridge few-shot against scikit-learn, 8 devices vs 1, t-SNE plots, fine-tuning starts from
the pretrained encoder, reconstruction grids paste visible patches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import Ridge
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from configs import mae_digits
from ssljax import data
from ssljax.config import ConfigError
from ssljax.evaluators import embedding_plot, fewshot, finetune, knn, reconstruction
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


def _digits_pixels():
  digits = load_digits()
  x, y = digits.data.astype(np.float32), digits.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(y))
  return x[order[360:]], y[order[360:]], x[order[:360]], y[order[:360]]


@pytest.mark.parametrize("k", [1, 20, 200])
def test_knn_agrees_with_sklearn_and_is_the_same_on_1_and_8_devices(k, mesh8):
  train_x, train_y, test_x, test_y = _digits_pixels()
  temperature = 0.07
  # Cosine distance d = 1 - similarity, so exp(similarity / T) = exp((1 - d) / T).
  sklearn = KNeighborsClassifier(k, metric="cosine", weights=lambda d: np.exp((1 - d) / temperature))
  reference = sklearn.fit(train_x, train_y).score(test_x, test_y)
  one_device = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1])
  ours = {
    name: knn.knn_accuracy(train_x, train_y, test_x, test_y, 10, k, mesh, temperature, chunk=100)
    for name, mesh in {"1": one_device, "8": mesh8}.items()
  }
  assert abs(ours["8"] - reference) <= 0.01 and ours["8"] == ours["1"], (ours, reference)


def test_knn_votes_are_similarity_weighted():
  # One query; neighbours: two of class 0 at similarity 0.6, one of class 1 at similarity 1.0. With T = 0.07
  # the single closer neighbour wins (e^(1/0.07) > 2 e^(0.6/0.07)); with T = 1 the two outvote it.
  angle = np.arccos(0.6)
  train_x = np.array([[np.cos(angle), np.sin(angle)], [np.cos(angle), -np.sin(angle)], [1.0, 0.0]], np.float32)
  train_y = np.array([0, 0, 1], np.int32)
  mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1])
  query, label = np.array([[1.0, 0.0]], np.float32), np.array([1])
  assert knn.knn_accuracy(train_x, train_y, query, label, 2, 3, mesh, temperature=0.07) == 1.0
  assert knn.knn_accuracy(train_x, train_y, query, label, 2, 3, mesh, temperature=1.0) == 0.0


@pytest.mark.parametrize("n", [8, 200])  # Dual (n < D) and primal solves.
def test_ridge_fit_equals_sklearn_ridge(n):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(n, 64)), rng.integers(0, 5, n)
  weights, bias = fewshot.ridge_fit(x, y, 5, l2_reg=0.3)
  reference = Ridge(alpha=0.3).fit(x, np.eye(5)[y])
  np.testing.assert_allclose(weights, reference.coef_.T, atol=1e-8)
  np.testing.assert_allclose(bias, reference.intercept_, atol=1e-8)


def test_fewshot_accuracy_grows_with_shots():
  train_x, train_y, test_x, test_y = _digits_pixels()
  accuracies = [fewshot.fewshot_accuracy(train_x, train_y, test_x, test_y, 10, k, 0.1, (0, 1)) for k in (1, 5, 25)]
  assert 0.5 < accuracies[0] < accuracies[1] < accuracies[2] <= 1.0, accuracies


def test_tsne_plot_separates_clusters(tmp_path):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 50)
  features = rng.normal(size=(200, 32)) + 8 * np.eye(32)[labels]
  coords = embedding_plot.embed_2d(features, "tsne", seed=0)
  assert coords.shape == (200, 2)
  assert silhouette_score(coords, labels) > 0.5
  png = embedding_plot.scatter_png(coords, labels, "test")
  assert png.shape == (512, 512, 3) and png.dtype == np.uint8
  colours = {tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for h in embedding_plot.PALETTE[:4]}
  assert colours <= {tuple(p) for p in png.reshape(-1, 3)}  # Every class is drawn in its colour.


def test_the_scratch_finetune_trains_without_layerwise_decay(monkeypatch):
  """MAE's fine-tune recipe decays the lr of lower layers (0.75 per block) to keep pretrained weights; the
  random-init baseline gets no such decay (or its own `scratch_optimizer`), the SSL fine-tune keeps it."""
  config = mae_digits.get_config()
  recipes = {}

  def record(finetune_config, mesh, init, *args):
    recipes["ssl" if init is not None else "random_init"] = dict(finetune_config.optimizer)
    return 0.0

  monkeypatch.setattr(finetune, "finetune_accuracy", record)
  labels = np.arange(40) % 10
  context = type("Context", (), {})()
  context.features = lambda: (None, labels, None)
  context.variables = {"params": {"encoder": {"w": jnp.zeros(1)}}}
  context.config, context.mesh, context.test_source = config, None, None
  context.train_source = data.ArraySource(np.zeros((40, 8, 8, 1), np.float32), labels, 10)
  settings = config.evals.finetune.to_dict()
  del settings["type"]
  finetune.run(context, **settings)
  assert recipes["ssl"]["layer_decay"] == 0.75 and recipes["random_init"]["layer_decay"] == 1.0
  assert {k: v for k, v in recipes["random_init"].items() if k not in ("layer_decay", "warmup_steps")} == {
    k: v for k, v in recipes["ssl"].items() if k not in ("layer_decay", "warmup_steps")
  }
  own = {**settings["optimizer"], "weight_decay": 0.3, "layer_decay": 1.0}
  finetune.run(context, **settings, scratch_optimizer=own)
  assert recipes["random_init"]["weight_decay"] == 0.3 and recipes["ssl"]["weight_decay"] == 0.05
  recipes.clear()
  config.eval_baselines = ()  # The run's one switch for baselines turns the scratch fine-tune off too.
  finetune.run(context, **settings)
  assert list(recipes) == ["ssl"]


def test_reconstruction_mean_patch_streams_the_training_split():
  """The mean-patch baseline equals the mean over the whole split (padding excluded) while reading at most one
  evaluation batch at a time (on ImageNet the whole split as float32 would be ~770 GB)."""
  images = np.random.default_rng(0).random((50, 8, 8, 1), np.float32)
  read = []

  class Source(data.ArraySource):
    def get(self, indices):
      read.append(len(indices))
      return super().get(indices)

  source = Source(images, np.zeros(50, np.int32), 10)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  for norm_pix in (False, True):
    mean = reconstruction.training_mean_patch(source, 16, sharding, 4, norm_pix)
    patches = np.asarray(patchify(jnp.asarray(images), 4))
    if norm_pix:
      patches = (patches - patches.mean(-1, keepdims=True)) / np.sqrt(
        patches.var(-1, keepdims=True, ddof=1) + 1e-6
      )  # MAE: unbiased
    np.testing.assert_allclose(mean, patches.mean(axis=0), rtol=1e-5, atol=1e-6)
  assert max(read) == 16
