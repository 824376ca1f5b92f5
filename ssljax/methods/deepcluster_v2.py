"""DeepCluster-v2 (Caron et al. 2020, facebookresearch/swav `main_deepclusterv2.py`): the multi-crop network of
SwAV, whose prototypes are the centroids of a spherical k-means of a memory bank of the embeddings of the whole
training set, recomputed at every epoch; each crop is trained to predict its image's cluster (softmax over the
prototypes at temperature 0.1), for each of several k-means (3 x 3000 on ImageNet).

Everything is in the train state, so a resume is bit-exact: the bank (one row per training example, the
embeddings of crops 0 and 1 from the last time the example was seen, split over the batch devices along the
examples), which rows it holds, and the cluster of every example are buffers; at the last step of each epoch
`post_update` runs the k-means (`lax.cond`; initial centroids drawn from the filled rows by the step's key) and
writes the centroids into the prototypes. The prototypes take no gradient steps (the reference freezes them for
300,000 iterations, longer than its run).

One deviation: the reference fills the bank with a forward pass before training; here the first epoch is that
pass (every update frozen, the loss 0 as nothing is clustered yet; BatchNorm statistics move, as in the
reference's pass in train mode), so a run of E epochs trains E - 1.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER, OPTIONAL_INT, Optional
from ssljax.methods import Method, check_crops_for_assign, encode_crops, freeze_paths, swav

BANK_ROWS_MULTIPLE = 1024
SCHEMA = {
  "proj_dim": int,
  "hidden_dim": int,
  "num_prototypes": tuple,
  "temperature": NUMBER,
  "crops_for_assign": tuple,
  "kmeans_iters": int,
  "freeze_prototypes_steps": Optional(OPTIONAL_INT),  # None: the whole run (the reference's 300,000 iterations).
}


class DeepClusterV2Model(nn.Module):
  """{"global", "local" crops, "index" [N]} -> {"features", "embeddings", "scores" (one [(2 + V) N, K_h] per
  k-means), "targets" [H, N] (each image's clusters, -1 before the first k-means)}."""

  encoder: nn.Module
  head: nn.Module
  num_prototypes: tuple
  crops_for_assign: tuple
  memory_size: int

  @nn.compact
  def __call__(self, crops, train: bool = True, teacher=None):
    del teacher
    features, all_features = encode_crops(self.encoder, crops, train)
    embeddings = losses.l2_normalize(self.head(all_features, train=train))
    scores = tuple(
      nn.Dense(k, use_bias=False, kernel_init=swav.random_prototypes, name=f"prototypes{h}")(embeddings)
      for h, k in enumerate(self.num_prototypes)
    )
    dim, index = embeddings.shape[-1], crops["index"]
    memory = self._bank("memory", (len(self.crops_for_assign), self.memory_size, dim), jnp.float32, 0, 1)
    filled = self._bank("filled", (self.memory_size,), jnp.bool_, False, 0)
    assignments = self._bank("assignments", (len(self.num_prototypes), self.memory_size), jnp.int32, -1, 1)
    outputs = {"features": features, "embeddings": embeddings, "scores": scores, "targets": assignments.value[:, index]}
    if train and not self.is_initializing():  # This step's embeddings replace the examples' rows.
      by_crop = jax.lax.stop_gradient(embeddings.reshape(-1, index.shape[0], dim))
      memory.value = jnp.asarray(memory.value).at[:, index].set(by_crop[jnp.asarray(self.crops_for_assign)])
      filled.value = jnp.asarray(filled.value).at[index].set(True)
    return outputs

  def _bank(self, name, shape, dtype, fill, examples_axis: int):
    names = tuple("examples" if axis == examples_axis else None for axis in range(len(shape)))
    return self.variable("buffers", name, nn.with_logical_partitioning(lambda: jnp.full(shape, fill, dtype), names))

  def encode(self, images):
    return self.encoder(images, train=False)


def recluster(params, model_state, step, rng, *, num_prototypes, kmeans_iters: int, steps_per_epoch: int):
  """At the last step of each epoch: for k-means h, spherical k-means of bank h mod A (the filled rows) from K_h
  filled rows drawn at random; the centroids become prototypes h, the assignments the examples' clusters."""

  def cluster(params, model_state):
    flat_params, flat_state = traverse_util.flatten_dict(params), traverse_util.flatten_dict(model_state)
    key_of = {path[-1]: path for path in flat_state if path[0] == "buffers"}
    memory, filled = flat_state[key_of["memory"]], flat_state[key_of["filled"]]
    weights = filled.astype(jnp.float32)
    assignments = []
    for h, k in enumerate(num_prototypes):
      bank = memory[h % memory.shape[0]]
      draw = jax.random.fold_in(rng, h)
      rows = jax.random.choice(draw, bank.shape[0], (k,), replace=False, p=weights / jnp.sum(weights))
      centroids, assigned = losses.kmeans(bank, bank[rows], kmeans_iters, spherical=True, weights=weights)
      kernel = next(path for path in flat_params if f"prototypes{h}" in path)
      flat_params[kernel] = centroids.T.astype(flat_params[kernel].dtype)
      assignments.append(jnp.where(filled, assigned, -1))
    flat_state[key_of["assignments"]] = jnp.stack(assignments)
    return traverse_util.unflatten_dict(flat_params), traverse_util.unflatten_dict(flat_state)

  at_epoch_end = (step + 1) % steps_per_epoch == 0
  return jax.lax.cond(at_epoch_end, cluster, lambda p, s: (p, s), params, model_state)


def deepcluster_v2_objective(outputs, batch, step, temperature: float, num_crops: int):
  del batch, step
  per_kmeans = [
    losses.pseudo_label_loss(scores, targets, num_crops, temperature)
    for scores, targets in zip(outputs["scores"], outputs["targets"], strict=True)
  ]
  metrics = {
    "embedding_std": losses.embedding_std(outputs["embeddings"]),
    "clustered_fraction": jnp.mean(outputs["targets"] >= 0),  # 0 in the bank-filling first epoch, then ~1.
  }
  return sum(per_kmeans) / len(per_kmeans), metrics


def build(config, info) -> Method:
  section = config.deepcluster_v2
  global_views, local_view, num_local = augment.view_configs(config)
  num_crops = len(global_views) + num_local
  assign = tuple(section.crops_for_assign)
  check_crops_for_assign(assign, num_crops, "config.deepcluster_v2.crops_for_assign")
  num_prototypes = tuple(section.num_prototypes)
  examples_per_epoch = info.steps_per_epoch * config.batch_size
  if not num_prototypes or any(k < 1 or k > examples_per_epoch for k in num_prototypes):
    raise ConfigError(
      f"config.deepcluster_v2.num_prototypes: {num_prototypes} must each be between 1 and the "
      f"{examples_per_epoch} examples of an epoch"
    )
  if section.kmeans_iters < 1:
    raise ConfigError(f"config.deepcluster_v2.kmeans_iters: {section.kmeans_iters} must be at least 1")
  # Rows rounded up so that any power-of-two number of batch devices up to 1024 splits the bank evenly, and a
  # checkpoint restores on any such mesh.
  memory_size = math.ceil(info.num_examples / BANK_ROWS_MULTIPLE) * BANK_ROWS_MULTIPLE
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  head = models.MLPHead(section.proj_dim, 2, section.hidden_dim, hidden_bias=True, last_bias=True, name="head")
  frozen_steps = section.get("freeze_prototypes_steps")
  frozen_steps = info.num_steps if frozen_steps is None else frozen_steps
  names = tuple(f"prototypes{h}" for h in range(len(num_prototypes)))
  spe = info.steps_per_epoch

  def frozen(params, step):
    bank_epoch = step < spe  # Every update of the first epoch: it only fills the bank.
    return jax.tree.map(lambda f: f | bank_epoch, freeze_paths(params, names, step < frozen_steps))

  def make_inputs(batch, rng):
    views = augment.multi_view(batch, rng, global_views, local_view, num_local)
    return {**views, "index": batch["index"]}

  return Method(
    model=DeepClusterV2Model(encoder, head, num_prototypes, assign, memory_size),
    make_inputs=make_inputs,
    loss=functools.partial(deepcluster_v2_objective, temperature=section.temperature, num_crops=num_crops),
    views_per_image=2,
    crops=(*global_views, *[local_view] * num_local),
    frozen=frozen,
    post_update=functools.partial(
      recluster, num_prototypes=num_prototypes, kmeans_iters=section.kmeans_iters, steps_per_epoch=spe
    ),
  )
