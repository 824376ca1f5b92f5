"""DINO (Caron et al. 2021): self-distillation with no labels. The student sees 2 global and V local crops, the
EMA teacher (momentum 0.996 -> 1, cosine per step) only the global ones; the student matches the teacher's
centred, sharpened distribution over `out_dim` prototypes on every pair of different crops. The centre is a buffer
(EMA of the global-batch mean teacher logits, momentum 0.9); the teacher temperature warms up per epoch (0.04 ->
0.07 over 30 epochs); the head's weight-normalised last layer is frozen during the first epoch (or
`freeze_last_layer_steps`), its optimizer state held too; evaluation reads the teacher, as the paper's.
One deviation is known: AdamW's step count is one for all parameters (optax) and advances through the freeze,
where torch counts the last layer's steps from its first gradient; so the last layer's updates after the freeze
get a smaller bias correction and are larger than the reference's (after ImageNet's 1,251 frozen steps: 2.7x at the
first, ~5x at the tenth, 1.2x a thousand steps on; on digits, 5 frozen steps, 0.5x at the first).

Besides the teacher's entropy (log K when flat, 0 on one prototype), each step logs whether the teacher is
view-invariant, which entropy alone cannot show (`view_invariance`: how alike the teacher's outputs for two crops
of one image are, against two crops of different images)."""

import functools

import flax.linen as nn
import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER, Optional
from ssljax.methods import Method, cosine_momentum, encode_crops, freeze_paths

SCHEMA = {
  "out_dim": int,
  "hidden_dim": int,
  "bottleneck_dim": int,
  "norm_last_layer": bool,
  "use_bn_in_head": Optional(bool),
  "student_temperature": NUMBER,
  "teacher_temperature": NUMBER,
  "warmup_teacher_temperature": NUMBER,
  "warmup_teacher_temperature_epochs": int,
  "center_momentum": NUMBER,
  "momentum": NUMBER,
  "final_momentum": NUMBER,
  "freeze_last_layer_epochs": int,
  "freeze_last_layer_steps": Optional(int),  # Instead of epochs: on a small dataset an epoch is a few steps.
}


class DINOModel(nn.Module):
  """{"global": [2N, ...], "local": [VN, ...]} crops -> student logits [(2 + V) N, K] (crop-major) and the centre
  as it was before this step; `teach` -> the teacher's logits of the global crops. The encoder runs once per
  resolution (BatchNorm statistics per resolution, as DINO's MultiCropWrapper), the head once on all features."""

  encoder: nn.Module
  head: nn.Module
  center_momentum: float

  @nn.compact
  def __call__(self, crops, train: bool = True, teacher=None):
    features, all_features = encode_crops(self.encoder, crops, train)
    logits = self.head(all_features, train=train)
    center = self.variable("buffers", "center", lambda: jnp.zeros((1, self.head.out_dim), jnp.float32))
    outputs = {"features": features, "logits": logits, "center": center.value}
    if teacher:  # Update after reading: this step's loss uses the centre of the steps before it.
      center.value = losses.update_center(center.value, teacher["logits"], self.center_momentum)
    return outputs

  def encode(self, images):
    return self.encoder(images, train=False)

  def teach(self, crops):
    features = self.encoder(crops["global"], train=models.teacher_train_mode(self.encoder))
    return {"logits": self.head(features, train=True)}


def teacher_temperature(step, section, steps_per_epoch: int):
  """The reference's per-epoch schedule: linspace(warmup, final, warmup_epochs)[epoch], then final."""
  epoch = step // steps_per_epoch
  warmup_epochs = section.warmup_teacher_temperature_epochs
  start, final = section.warmup_teacher_temperature, section.teacher_temperature
  if warmup_epochs <= 1:
    return jnp.where(epoch < warmup_epochs, start, final)
  return jnp.where(epoch < warmup_epochs, start + (final - start) * epoch / (warmup_epochs - 1), final)


def dino_objective(outputs, batch, step, section, steps_per_epoch: int):
  del batch
  temperature = teacher_temperature(step, section, steps_per_epoch)
  teacher_logits = outputs["teacher"]["logits"]
  loss = losses.dino_loss(
    outputs["logits"], teacher_logits, outputs["center"], section.student_temperature, temperature
  )
  teacher_probs = losses.teacher_softmax(teacher_logits, outputs["center"], temperature)
  entropy = -jnp.mean(jnp.sum(teacher_probs * jnp.log(jnp.maximum(teacher_probs, 1e-30)), axis=-1))
  metrics = {
    "embedding_std": losses.embedding_std(outputs["features"]),
    "teacher_entropy": entropy,  # Collapse to uniform: log(out_dim); to one prototype: 0.
    "teacher_temperature": temperature,
    **view_invariance(teacher_logits),
  }
  return loss, metrics


def view_invariance(teacher_logits):
  """How view-invariant the teacher is, from its crop-major logits [2N, K] centred by their batch mean (what
  sets one image apart from the others): "teacher_view_correlation", the mean Pearson correlation over the K
  prototypes between the two crops of each image, "teacher_other_correlation", the same between crops of
  different images (image i's first crop and image i + 1's second), and "teacher_view_agreement", the fraction
  of images whose crops pick the same top prototype. Learned invariance: the first well above the second."""
  centred = teacher_logits.astype(jnp.float32)
  centred = centred - centred.mean(axis=0, keepdims=True)
  centred = centred - centred.mean(axis=-1, keepdims=True)
  unit = centred / jnp.maximum(jnp.linalg.norm(centred, axis=-1, keepdims=True), 1e-12)
  first, second = jnp.split(unit, 2)
  return {
    "teacher_view_correlation": jnp.sum(first * second, axis=-1).mean(),
    "teacher_other_correlation": jnp.sum(first * jnp.roll(second, 1, axis=0), axis=-1).mean(),
    "teacher_view_agreement": jnp.mean(jnp.argmax(first, axis=-1) == jnp.argmax(second, axis=-1)),
  }


def build(config, info) -> Method:
  section = config.dino
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  head = models.DINOHead(
    section.out_dim,
    section.hidden_dim,
    section.bottleneck_dim,
    norm_last_layer=section.norm_last_layer,
    use_bn=section.get("use_bn_in_head", False),
    name="head",
  )
  global_views, local_view, num_local = augment.view_configs(config)
  frozen_steps = section.get("freeze_last_layer_steps")
  if frozen_steps is None:
    frozen_steps = section.freeze_last_layer_epochs * info.steps_per_epoch
  if frozen_steps < 0:
    raise ConfigError(f"config.dino.freeze_last_layer_steps: {frozen_steps} must be at least 0")
  return Method(
    model=DINOModel(encoder, head, section.center_momentum),
    make_inputs=functools.partial(
      augment.multi_view, global_views=global_views, local_view=local_view, num_local=num_local
    ),
    loss=functools.partial(dino_objective, section=section, steps_per_epoch=info.steps_per_epoch),
    views_per_image=2,
    crops=(*global_views, *[local_view] * num_local),
    teacher_momentum=cosine_momentum(section.momentum, section.final_momentum, info.num_steps),
    evaluate_teacher=True,
    frozen=lambda params, step: freeze_paths(params, ("last_layer", "last_layer_gain"), step < frozen_steps),
  )
