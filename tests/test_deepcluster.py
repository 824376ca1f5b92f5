"""DeepCluster (v1): the epoch's clustering (PCA whitening, k-means with empty clusters split), the classifier
re-initialised, sampling uniform over clusters, pseudo-labels re-assigned every epoch, and a run stopped mid-epoch
after a clustering resuming bit-exact, through `ssljax.experiment.train`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import deepcluster_digits
from ssljax import checkpoint, data, experiment, losses, sharding
from ssljax.methods import deepcluster
from ssljax.metric_writer import MetricWriter
from ssljax.train_step import build_trainer

pytestmark = pytest.mark.xdist_group("deepcluster")  # One worker computes the module's runs once.


def test_split_empty_clusters_by_hand():
  """Counts (3, 0, 5, 0): the first empty cluster splits the largest (2), the second the next largest (0)."""
  centroids = jnp.array([[1.0, 2.0], [9.0, 9.0], [4.0, 8.0], [7.0, 7.0]])
  split = losses.split_empty_clusters(centroids, jnp.array([3.0, 0.0, 5.0, 0.0]))
  e = losses.SPLIT_EPSILON
  expected = [[1 - e, 2 * (1 + e)], [4 * (1 + e), 8 * (1 - e)], [4 * (1 - e), 8 * (1 + e)], [1 + e, 2 * (1 - e)]]
  np.testing.assert_allclose(split, expected, rtol=1e-6)


def test_kmeans_with_splitting_leaves_no_cluster_empty():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=(50, 2)) + 10, rng.normal(size=(50, 2)) - 10]).astype(np.float32)
  init = np.array([[10.0, 10.0], [-10.0, -10.0], [500.0, 500.0]], np.float32)  # The third never wins a point.
  _, plain = losses.kmeans(x, init, num_iters=5)
  _, split = losses.kmeans(x, init, num_iters=5, split_empty=True)
  assert len(np.unique(plain)) == 2 and len(np.unique(split)) == 3


def test_pca_whitening_equals_the_reference_up_to_axis_signs():
  """Centred, projected on the leading principal axes, scaled to unit variance, rows l2-normalised (faiss'
  PCAMatrix(eigen_power=-0.5) then normalisation): compared through the rows' Gram matrix, which the axes' signs
  do not change."""
  x = np.random.default_rng(1).normal(size=(200, 12)) @ np.random.default_rng(2).normal(size=(12, 12))
  centred = x - x.mean(0)
  variances, axes = np.linalg.eigh(centred.T @ centred / len(x))
  projected = centred @ axes[:, ::-1][:, :5] / np.sqrt(variances[::-1][:5])
  assert np.allclose(np.cov(projected.T, bias=True), np.eye(5), atol=1e-8)
  reference = projected / np.linalg.norm(projected, axis=1, keepdims=True)
  whitened = np.asarray(jax.jit(losses.pca_whiten, static_argnums=1)(jnp.float32(x), 5))
  np.testing.assert_allclose(whitened @ whitened.T, reference @ reference.T, atol=2e-4)


def _state_with_clusters(clusters):
  return {"buffers": {"model": {"clusters": np.asarray(clusters, np.int32), "clustered_epoch": np.int32(0)}}}


def test_epoch_order_samples_every_cluster_equally_and_depends_on_the_epoch():
  clusters = np.array([0] * 70 + [1] * 20 + [2] * 10 + [-1] * 0)
  state = _state_with_clusters(clusters)
  order = deepcluster.epoch_order(state, epoch=3, seed=0, num_samples=96)
  counts = np.bincount(clusters[order], minlength=3)
  assert len(order) == 96 and counts.max() - counts.min() <= 3  # 33 per cluster before the shuffle and cut.
  longer = deepcluster.epoch_order(state, epoch=3, seed=0, num_samples=1000)  # 10 passes: `reassign` = 10.
  assert len(longer) == 1000 and np.bincount(clusters[longer]).min() >= 320
  np.testing.assert_array_equal(order, deepcluster.epoch_order(state, epoch=3, seed=0, num_samples=96))
  assert not np.array_equal(order, deepcluster.epoch_order(state, epoch=4, seed=0, num_samples=96))
  assert deepcluster.clustered_epoch(state) == 0


def _run(workdir, config, stop_after=None, devices=8):
  """`experiment.train` on digits from `workdir`'s newest checkpoint (or the start); with `stop_after`, stopped
  there as a preemption would stop it (a checkpoint of that step saved)."""
  mesh = sharding.make_mesh((("data", devices),), jax.devices()[:devices])
  source = data.load_source(config.dataset, "train")
  trainer = build_trainer(config, mesh, len(source), source.num_classes)
  manager = checkpoint.make_manager(str(workdir))
  state = experiment.restore(config, str(workdir), trainer, manager) or trainer.make_state(config.seed)

  class StopAt:  # `experiment.train` asks once per finished step.
    calls = 0

    def reached(self):
      self.calls += 1
      return stop_after is not None and self.calls >= stop_after

  writer = MetricWriter(str(workdir))
  state = experiment.train(config, str(workdir), mesh, trainer, manager, state, (source, None), writer, StopAt())
  manager.wait_until_finished()
  writer.close()
  return trainer, state


def _losses(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """(config, workdir, (trainer, final state)) of 6 steps (3 epochs) in one go."""
  config = deepcluster_digits.get_config("runlocal,train_only")
  config.update(total_steps=6, checkpoint_every=100, log_every=1)
  workdir = tmp_path_factory.mktemp("whole")
  return config, workdir, _run(workdir, config)


def test_each_epoch_clusters_the_whole_training_set_and_trains_on_the_pseudo_labels(uninterrupted):
  """Epochs of 2 steps: after 6 steps the state holds epoch 2's clusters (k-means of the PCA-whitened features
  of all 1,437 digits into 20 non-empty clusters) and a classifier trained for 2 steps from its re-initialisation."""
  config, _, (trainer, state) = uninterrupted
  buffers = jax.device_get(state.model_state["buffers"]["model"])
  assert int(buffers["clustered_epoch"]) == 2
  assert buffers["clusters"].shape == (1437,) and len(np.unique(buffers["clusters"])) == 20
  bias = np.asarray(state.params["model"]["top_layer"]["bias"])
  assert 0 < np.abs(bias).max() < 0.05  # Zero at the epoch's start, two SGD steps since.


def test_clusters_and_classifier_are_reassigned_at_each_epoch(uninterrupted):
  config, _, (trainer, state) = uninterrupted
  host = jax.device_get(state)
  features = np.random.default_rng(0).normal(size=(1437, 32)).astype(np.float32)
  params, model_state = trainer.method.per_epoch.start(host.params, host.model_state, features, 3, jax.random.key(1))
  new = jax.device_get(model_state["buffers"]["model"])
  assert int(new["clustered_epoch"]) == 3
  assert not np.array_equal(new["clusters"], host.model_state["buffers"]["model"]["clusters"])
  np.testing.assert_array_equal(params["model"]["top_layer"]["bias"], 0.0)
  kernel = np.asarray(params["model"]["top_layer"]["kernel"])
  assert abs(kernel.std() - 0.01) < 0.002 and not np.array_equal(kernel, host.params["model"]["top_layer"]["kernel"])
  jax.tree.map(np.testing.assert_array_equal, params["model"]["encoder"], host.params["model"]["encoder"])


def test_stopped_mid_epoch_after_a_clustering_then_resumed_is_bit_exact(uninterrupted, tmp_path):
  config, _, (_, expected) = uninterrupted
  _run(tmp_path, config, stop_after=3)  # Step 3 is the middle of epoch 1, after its clustering.
  assert checkpoint.make_manager(str(tmp_path)).all_steps() == [3]
  _, resumed = _run(tmp_path, config)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed), jax.device_get(expected))


def test_8_devices_equal_1_device_and_a_nan_batch_leaves_the_state_unchanged(uninterrupted, tmp_path):
  """Losses to float precision and the same clusters (features differ by float noise only); then a batch with a
  NaN: no update, the clusters, the epoch, the classifier and every other leaf unchanged."""
  config, workdir, (trainer, state) = uninterrupted
  _, one = _run(tmp_path, config, devices=1)
  one_losses, eight_losses = _losses(tmp_path), _losses(workdir)
  assert sorted(one_losses) == list(range(1, 7)) and eight_losses[3] > 0
  # Epoch 0 clusters the initial network's features: the same clusters, losses to float precision. Later epochs
  # cluster features that differ by float noise, and k-means amplifies it (NMI 0.58 between the two runs' epoch-2
  # clusters), so the clustering itself is compared on the same features, sharded over 8 devices or on 1.
  np.testing.assert_allclose([one_losses[1], one_losses[2]], [eight_losses[1], eight_losses[2]], rtol=1e-4)
  features = np.random.default_rng(2).normal(size=(1440, 32)).astype(np.float32)  # 1,440: splits over 8.
  key = jax.random.key(3)
  clusters = []
  for devices in (1, 8):
    mesh = sharding.make_mesh((("data", devices),), jax.devices()[:devices])
    placed = jax.device_put(features, sharding.batch_sharding(mesh))
    clusters.append(np.asarray(deepcluster.cluster(placed, key, 20, 8, 20)))
  np.testing.assert_array_equal(clusters[1], clusters[0])
  source = data.load_source(config.dataset, "train")
  sampler = data.StepIndexedSampler(len(source), config.batch_size, config.seed)
  _, batch = next(data.train_batches(source, sampler, trainer.batch_sharding, 0, 1))
  batch = {**batch, "image": batch["image"].at[0, 0, 0, 0].set(jnp.nan)}
  before = jax.device_get(state)
  after, metrics = trainer.step(jax.device_put(before, trainer.state_sharding), batch)
  assert int(metrics["nonfinite"]) == 1
  after = jax.device_get(after)
  jax.tree.map(
    np.testing.assert_array_equal,
    (after.params, after.model_state, after.opt_state),
    (before.params, before.model_state, before.opt_state),
  )
