"""SimCLR (Chen et al. 2020): two augmented views per image, encoder + projection MLP, NT-Xent loss."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ssljax import augment, losses, models, sharding
from ssljax.methods import Method


class SimCLRModel(nn.Module):
  encoder: nn.Module
  projector: nn.Module

  def __call__(self, views, train: bool = True):
    """views [2N, H, W, C] (first N: view one, last N: view two) -> features and projections [2N, ...]."""
    features = self.encoder(views, train=train)
    return {"features": features, "projections": self.projector(features, train=train)}

  def encode(self, images):
    return self.encoder(images, train=False)


def contrastive_loss(outputs, batch, step, temperature: float, block_size: int | None = None, mesh=None):
  """google-research/simclr's contrastive loss over the global batch: the *sum* of the two views' mean
  cross-entropies, i.e. twice `nt_xent` (the mean over all 2N anchors). The factor is not neutral under LARS: the
  BatchNorm and bias updates, which LARS does not trust-scale, would be halved and weight decay's share of every
  other update doubled, so the step optimises the reference's loss. With `block_size` the loss runs blockwise
  inside `jax.shard_map` over the mesh's batch axes: each device keeps its anchors and gathers the [2N, D]
  embeddings, so no device ever holds the (2N)^2 similarities (without it, jit's partitioner gathers `z` and
  builds them)."""
  del batch, step  # Unsupervised, no schedule.
  metrics = {"embedding_std": losses.embedding_std(outputs["projections"])}
  z_a, z_b = jnp.split(outputs["projections"], 2)
  if block_size is None or mesh is None:
    return 2 * losses.nt_xent(z_a, z_b, temperature, block_size=block_size), metrics
  axes = sharding.batch_axes(mesh)
  loss = functools.partial(losses.nt_xent, temperature=temperature, block_size=block_size, axis_name=axes)
  sharded = jax.shard_map(loss, mesh=mesh, in_specs=(P(axes), P(axes)), out_specs=P())
  return 2 * sharded(z_a, z_b), metrics


def build(config, info) -> Method:
  dtype = jnp.dtype(config.dtype)
  encoder = models.build_encoder(config.model, config.dataset.image_size, dtype)
  projector = models.ProjectionHead(
    out_dim=config.simclr.proj_dim,
    num_layers=config.simclr.proj_layers,
    hidden_dim=config.simclr.get("proj_hidden_dim"),
    dtype=dtype,
    kernel_init_std=config.simclr.get("proj_init_std"),
  )
  views, _, _ = augment.view_configs(config)
  return Method(
    model=SimCLRModel(encoder, projector),
    make_inputs=functools.partial(augment.global_views, views=views),
    loss=functools.partial(
      contrastive_loss,
      temperature=config.simclr.temperature,
      block_size=config.simclr.get("block_size"),
      mesh=info.mesh,
    ),
    views_per_image=2,
    crops=tuple(views),
  )
