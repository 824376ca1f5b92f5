"""DeepCluster (Caron et al. 2018, facebookresearch/deepcluster), as lecture 003 teaches it: at the start of every
epoch, extract the features of the whole training set, PCA-whiten and l2-normalise them, k-means them into k
clusters (empty ones re-seeded by splitting a large one), re-initialise the classifier on top of the network,
and train network and classifier for the epoch on the cluster assignments as labels, with the epoch's images
drawn uniformly over the clusters.

The epoch's start is host-level (`Method.per_epoch`, run by `ssljax.experiment.train` before the first step of
every epoch, around the one shared step): the features come from the encoder in inference mode on the un-augmented
training images (the reference's `compute_features` in eval mode on centre crops). Its result, the examples'
clusters and the epoch they belong to, are buffers of the model and the fresh classifier is in the parameters,
so a checkpoint taken mid-epoch resumes bit-exact, and a resume at an epoch's start clusters again from the same
parameters with the same key. The epoch's order (`epoch_order`: every non-empty cluster sampled equally, then
shuffled, as the reference's UnifLabelSampler) is a function of those clusters, the seed and the epoch.

An "epoch" here is `reassign` passes over the training set (the reference's `--reassign`, 1 by default): on
digits a pass is 5 steps, and a classifier re-initialised every 5 steps never leaves chance (measured: the loss
stays at log k, and the linear probe reads 0.681 at 10 labels per class against raw pixels' 0.853), so the
digits config clusters every 10 passes.

As the reference: classifier N(0, 0.01^2) with zero bias at every epoch; SGD with momentum 0.9 for the network, a
plain SGD step (no momentum: the reference builds its optimizer anew each epoch) for the classifier, lr 0.05,
weight decay 1e-5, constant. Differences, stated: a ResNet instead of AlexNet / VGG-16, no Sobel filter; the
classifier sits directly on the pooled features (the reference's sits on an MLP's last hidden layer).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, PerEpoch

SCHEMA = {"num_clusters": int, "pca_dim": int, "kmeans_iters": int, "reassign": NUMBER}


class DeepClusterModel(nn.Module):
  """{"image": [N, ...] one augmented view, "index": [N]} -> {"features", "logits" [N, k] of the classifier,
  "targets" [N], the images' clusters (-1 before the first clustering)}."""

  encoder: nn.Module
  num_clusters: int
  num_examples: int

  @nn.compact
  def __call__(self, inputs, train: bool = True, teacher=None):
    del teacher
    features = self.encoder(inputs["image"], train=train)
    classifier = nn.Dense(
      self.num_clusters, kernel_init=nn.initializers.normal(0.01), bias_init=nn.initializers.zeros, name="top_layer"
    )
    clusters = self.variable("buffers", "clusters", lambda: jnp.full((self.num_examples,), -1, jnp.int32))
    self.variable("buffers", "clustered_epoch", lambda: jnp.full((), -1, jnp.int32))
    return {"features": features, "logits": classifier(features), "targets": clusters.value[inputs["index"]]}

  def encode(self, images):
    return self.encoder(images, train=False)


def cluster(features, key, num_clusters: int, pca_dim: int, kmeans_iters: int):
  """The clusters [N] of features [N, D]: PCA-whitened to `pca_dim`, l2-normalised, Euclidean k-means from k
  distinct random rows, empty clusters re-seeded by splitting (`losses.kmeans`)."""
  points = losses.pca_whiten(features, pca_dim)
  rows = jax.random.choice(key, points.shape[0], (num_clusters,), replace=False)
  return losses.kmeans(points, points[rows], kmeans_iters, split_empty=True)[1]


def start_epoch(params, model_state, features, epoch, key, *, num_clusters: int, pca_dim: int, kmeans_iters: int):
  """(params, model_state) for `epoch`: the examples' new clusters, the epoch recorded, a fresh classifier."""
  cluster_key, classifier_key = jax.random.split(key)
  clusters = cluster(features, cluster_key, num_clusters, pca_dim, kmeans_iters)

  def fresh(path, leaf):
    names = [str(getattr(k, "key", k)) for k in path]
    if "top_layer" not in names:
      return leaf
    if names[-1] == "bias":
      return jnp.zeros_like(leaf)
    return 0.01 * jax.random.normal(classifier_key, leaf.shape, leaf.dtype)

  def recorded(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "clusters":
      return clusters
    return jnp.full_like(leaf, epoch) if name == "clustered_epoch" else leaf

  params = jax.tree_util.tree_map_with_path(fresh, params)
  return params, jax.tree_util.tree_map_with_path(recorded, model_state)


def _buffer(model_state, name: str):
  """The model's buffer `name`, with or without the online probe's wrapper around the model."""
  leaves = jax.tree_util.tree_leaves_with_path(model_state)
  return next(leaf for path, leaf in leaves if str(getattr(path[-1], "key", "")) == name)


def clustered_epoch(model_state) -> int:
  """The epoch the model's clusters were computed for (-1: none yet)."""
  return int(_buffer(model_state, "clustered_epoch"))


def epoch_order(model_state, epoch: int, seed: int, num_samples: int) -> np.ndarray:
  """The reference's UnifLabelSampler: int(num_samples / non-empty clusters) + 1 images from each non-empty cluster
  (with replacement when it is smaller), shuffled, the first `num_samples`; keyed by (seed, epoch)."""
  clusters = np.asarray(_buffer(model_state, "clusters"))
  rng = np.random.default_rng([seed, epoch, 3])
  members = [np.flatnonzero(clusters == c) for c in np.unique(clusters[clusters >= 0])]
  per_cluster = num_samples // len(members) + 1
  order = np.concatenate([rng.choice(m, per_cluster, replace=len(m) <= per_cluster) for m in members])
  rng.shuffle(order)
  return order[:num_samples]


def objective(outputs, batch, step):
  del batch, step
  loss = losses.pseudo_label_loss(outputs["logits"], outputs["targets"])
  return loss, {"embedding_std": losses.embedding_std(outputs["features"])}


def build(config, info) -> Method:
  section = config.deepcluster
  if not 2 <= section.num_clusters <= info.num_examples:
    raise ConfigError(
      f"config.deepcluster.num_clusters: {section.num_clusters} must be between 2 and the {info.num_examples} "
      "training examples"
    )
  if section.reassign <= 0:
    raise ConfigError(f"config.deepcluster.reassign: {section.reassign} must be > 0 (epochs between clusterings)")
  if section.pca_dim < 1 or section.kmeans_iters < 1:
    raise ConfigError(
      f"config.deepcluster: pca_dim {section.pca_dim} and kmeans_iters {section.kmeans_iters} must be at least 1"
    )
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  views, _, _ = augment.view_configs(config)

  def make_inputs(batch, rng):
    return {"image": augment.multi_view(batch, rng, views[:1], None, 0)["global"], "index": batch["index"]}

  settings = dict(num_clusters=section.num_clusters, pca_dim=section.pca_dim, kmeans_iters=section.kmeans_iters)
  return Method(
    model=DeepClusterModel(encoder, section.num_clusters, info.num_examples),
    make_inputs=make_inputs,
    loss=objective,
    views_per_image=1,
    crops=tuple(views[:1]),
    optimizer_groups={"top_layer": {"momentum": 0.0}},
    per_epoch=PerEpoch(
      jax.jit(functools.partial(start_epoch, **settings)), clustered_epoch, epoch_order, section.reassign
    ),
  )
