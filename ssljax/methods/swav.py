"""SwAV (Caron et al. 2020): swapping assignments between views. Each crop's l2-normalised projection is scored
against K l2-normalised prototypes; the Sinkhorn-Knopp codes of the global crops (an equipartition of the batch
over the prototypes) are predicted from every other crop (facebookresearch/swav `main_swav.py`).

As the reference: the encoder runs once per resolution, the projection head once on all crops; the prototypes are
projected back onto the unit sphere after every update (`Method.post_update`; the reference normalises them
before every forward) and frozen for the first `freeze_prototypes_steps` steps, their optimizer state held too
(it gives them no gradient). With `queue_length` > 0 a queue of earlier embeddings of the assignment crops (a
buffer, checkpointed and reverted with the state) joins the Sinkhorn batch once `epoch_queue_starts` epochs have
passed and it holds `queue_length` embeddings; its scores use the current prototypes, without gradient. Under jit
the queue holds the global batch's embeddings, as the union of the reference's per-GPU queues."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, check_crops_for_assign, check_divisible, encode_crops, freeze_paths

SCHEMA = {
  "proj_dim": int,
  "hidden_dim": int,
  "num_prototypes": int,
  "temperature": NUMBER,
  "epsilon": NUMBER,
  "sinkhorn_iters": int,
  "crops_for_assign": tuple,
  "freeze_prototypes_steps": int,
  "queue_length": int,
  "epoch_queue_starts": int,
}


def unit_columns(kernel):
  """A [D, K] kernel with each of its K columns (the prototypes) scaled to unit norm."""
  return losses.l2_normalize(kernel.T).T.astype(kernel.dtype)


def random_prototypes(key, shape, dtype=jnp.float32):
  """Random unit prototypes: directions uniform on the sphere."""
  return unit_columns(jax.random.normal(key, shape, dtype))


class SwAVModel(nn.Module):
  """{"global": [2N, ...], "local": [VN, ...]} crops -> {"features" (global crops'), "embeddings" and "scores"
  [(2 + V) N, ...] crop-major, "queue_scores" [A, L, K] of the queue as it was before this step}."""

  encoder: nn.Module
  head: nn.Module
  num_prototypes: int
  crops_for_assign: tuple
  queue_length: int

  @nn.compact
  def __call__(self, crops, train: bool = True, teacher=None):
    del teacher
    features, all_features = encode_crops(self.encoder, crops, train)
    embeddings = losses.l2_normalize(self.head(all_features, train=train))
    prototypes = nn.Dense(self.num_prototypes, use_bias=False, kernel_init=random_prototypes, name="prototypes")
    outputs = {"features": features, "embeddings": embeddings, "scores": prototypes(embeddings)}
    if self.queue_length:
      shape = (len(self.crops_for_assign), self.queue_length, embeddings.shape[-1])
      queue = self.variable("buffers", "queue", lambda: jnp.zeros(shape, jnp.float32))
      pointer = self.variable("buffers", "pointer", lambda: jnp.zeros((), jnp.int32))
      outputs["queue_scores"] = jax.lax.stop_gradient(prototypes(queue.value))
      if train and not self.is_initializing():  # Enqueue after reading: the loss only sees the old queue.
        num_images = features.shape[0] // 2
        by_crop = embeddings.reshape(-1, num_images, embeddings.shape[-1])
        new = jax.lax.stop_gradient(by_crop[jnp.asarray(self.crops_for_assign)])
        queue.value = jax.lax.dynamic_update_slice(queue.value, new, (0, pointer.value, 0))
        pointer.value = (pointer.value + num_images) % self.queue_length
    return outputs

  def encode(self, images):
    return self.encoder(images, train=False)


def swav_objective(outputs, batch, step, section, num_crops: int, queue_from_step: int):
  del batch
  loss = losses.swav_loss(
    outputs["scores"],
    num_crops,
    tuple(section.crops_for_assign),
    section.temperature,
    section.epsilon,
    section.sinkhorn_iters,
    queue_scores=outputs.get("queue_scores"),
    use_queue=step >= queue_from_step,
  )
  top = jnp.argmax(outputs["scores"], axis=-1)
  used = jnp.zeros(outputs["scores"].shape[-1], bool).at[top].set(True)
  metrics = {
    "embedding_std": losses.embedding_std(outputs["embeddings"]),
    "prototype_usage": jnp.mean(used),  # Fraction of prototypes that are some crop's nearest: 1 / K at collapse.
  }
  return loss, metrics


def normalize_prototypes(params, model_state, step=None, rng=None):
  """Every prototype (a column of the "prototypes" kernel) back on the unit sphere (a `Method.post_update`)."""
  del step, rng

  def leaf(path, p):
    names = {str(getattr(k, "key", k)) for k in path}
    return unit_columns(p) if "prototypes" in names else p

  return jax.tree_util.tree_map_with_path(leaf, params), model_state


def build(config, info) -> Method:
  section = config.swav
  global_views, local_view, num_local = augment.view_configs(config)
  num_crops = len(global_views) + num_local
  assign = tuple(section.crops_for_assign)
  check_crops_for_assign(assign, num_crops, "config.swav.crops_for_assign")
  for key in ("freeze_prototypes_steps", "queue_length", "epoch_queue_starts"):
    if section[key] < 0:
      raise ConfigError(f"config.swav.{key}: {section[key]} must be at least 0")
  if section.queue_length:
    check_divisible(section.queue_length, config.batch_size, "config.swav.queue_length", "the batch size")
  queue_from_step = section.epoch_queue_starts * info.steps_per_epoch + section.queue_length // config.batch_size
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  # The reference's projection head: Linear -> BN -> ReLU -> Linear, with biases.
  head = models.MLPHead(section.proj_dim, 2, section.hidden_dim, hidden_bias=True, last_bias=True, name="head")
  frozen_steps = section.freeze_prototypes_steps
  return Method(
    model=SwAVModel(encoder, head, section.num_prototypes, assign, section.queue_length),
    make_inputs=functools.partial(
      augment.multi_view, global_views=global_views, local_view=local_view, num_local=num_local
    ),
    loss=functools.partial(swav_objective, section=section, num_crops=num_crops, queue_from_step=queue_from_step),
    views_per_image=2,
    crops=(*global_views, *[local_view] * num_local),
    frozen=lambda params, step: freeze_paths(params, ("prototypes",), step < frozen_steps),
    post_update=normalize_prototypes,
  )
