"""MoCo v2 (Chen et al. 2020, after He et al. 2019): queries from one view against the EMA key encoder's key of
the other view, with a queue of earlier keys as negatives; InfoNCE at tau 0.2, MLP head, momentum 0.999.

The queue is a buffer of the model ("buffers" collection): the loss reads the queue as it was before the step,
then the step's keys (l2-normalised, from the teacher, so without gradient) replace its oldest rows. Under jit the
keys are those of the *global* batch, so every device holds the same queue and the pointer advances by the global
batch.

Shuffle-BN is not needed here: MoCo shuffles the key batch across GPUs so that a query and its key do not share
per-GPU BatchNorm statistics (which would leak a "same sub-batch" signal). Our BatchNorm is global under jit:
every view's statistics are those of the whole batch, and a shuffle before the key encoder followed by the
inverse shuffle after it returns exactly the same keys (tests/test_methods.py checks this on 8 devices).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, check_divisible, cosine_momentum

SCHEMA = {"proj_dim": int, "hidden_dim": int, "queue_size": int, "temperature": NUMBER, "momentum": NUMBER}


class MoCoV2Model(nn.Module):
  """{"query": [N, ...], "key": [N, ...]} views -> query projections and the queue as it was before this step;
  `teach` -> the key encoder's projections of the key views."""

  encoder: nn.Module
  projector: nn.Module
  queue_size: int
  dim: int

  @nn.compact
  def __call__(self, views, train: bool = True, teacher=None):
    features = self.encoder(views["query"], train=train)
    queries = self.projector(features, train=train)
    queue = self.variable(
      "buffers",
      "queue",
      lambda: losses.l2_normalize(jax.random.normal(self.make_rng("params"), (self.queue_size, self.dim))),
    )
    pointer = self.variable("buffers", "pointer", lambda: jnp.zeros((), jnp.int32))
    outputs = {"features": features, "queries": queries, "queue": queue.value}
    if teacher:  # Enqueue after reading: the loss only ever sees the old queue.
      keys = losses.l2_normalize(teacher["keys"])
      queue.value = jax.lax.dynamic_update_slice(queue.value, keys, (pointer.value, 0))
      pointer.value = (pointer.value + keys.shape[0]) % self.queue_size
    return outputs

  def encode(self, images):
    return self.encoder(images, train=False)

  def teach(self, views):
    features = self.encoder(views["key"], train=models.teacher_train_mode(self.encoder))
    return {"keys": self.projector(features, train=True)}


def query_and_key(batch, rng, views):
  query, key = jnp.split(augment.global_views(batch, rng, views), 2)
  return {"query": query, "key": key}


def moco_v2_objective(outputs, batch, step, temperature: float):
  del batch, step
  loss = losses.info_nce(outputs["queries"], outputs["teacher"]["keys"], outputs["queue"], temperature)
  return loss, {"embedding_std": losses.embedding_std(outputs["queries"])}


def build(config, info) -> Method:
  section = config.moco_v2
  check_divisible(section.queue_size, config.batch_size, "config.moco_v2.queue_size", "the keys per step")
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  # MoCo v2's head: Dense -> ReLU -> Dense, with biases, no BatchNorm.
  projector = models.MLPHead(
    section.proj_dim, 2, section.hidden_dim, hidden_norm=False, hidden_bias=True, last_bias=True, name="projector"
  )
  views, _, _ = augment.view_configs(config)
  return Method(
    model=MoCoV2Model(encoder, projector, section.queue_size, section.proj_dim),
    make_inputs=functools.partial(query_and_key, views=views),
    loss=functools.partial(moco_v2_objective, temperature=section.temperature),
    views_per_image=1,
    crops=tuple(views),
    teacher_momentum=cosine_momentum(section.momentum, section.momentum, info.num_steps),  # Constant.
  )
