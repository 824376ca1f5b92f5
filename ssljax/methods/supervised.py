"""Supervised training of an encoder plus a linear head: the fine-tuning protocol (MAE, SimCLR semi-supervised)
and a supervised baseline, through the same train step as the self-supervised methods."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax import augment, models
from ssljax.methods import Method


class Classifier(nn.Module):
  encoder: nn.Module
  num_classes: int
  head_init_std: float = 2e-5  # MAE's fine-tuning head init (trunc. normal 2e-5): starts near uniform logits.

  @nn.compact
  def __call__(self, images, train: bool = True):
    features = self.encoder(images, train=train)
    head = nn.Dense(self.num_classes, kernel_init=nn.initializers.truncated_normal(self.head_init_std), name="head")
    return {"features": features, "logits": head(features)}

  def encode(self, images):
    return self.encoder(images, train=False)


def cross_entropy_loss(outputs, batch, step, label_smoothing: float):
  del step
  logits = outputs["logits"].astype(jnp.float32)
  targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], logits.shape[-1]), label_smoothing)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return optax.softmax_cross_entropy(logits, targets).mean(), {"train_accuracy": accuracy}


def lora_frozen(params, step=None):
  """A `Method.frozen` tree for LoRA fine-tuning: everything frozen but the adapters (modules "*_lora") and the
  classification head."""
  del step

  def leaf(path, _):
    keys = [str(getattr(k, "key", k)) for k in path]
    return jnp.array(not any(k.endswith("_lora") or k == "head" for k in keys))

  return jax.tree_util.tree_map_with_path(leaf, params)


def build(config, info) -> Method:
  dtype = jnp.dtype(config.dtype)
  encoder = models.build_encoder(config.model, config.dataset.image_size, dtype)
  return Method(
    frozen=lora_frozen if config.model.get("lora") else None,
    model=Classifier(encoder, info.num_classes),
    make_inputs=functools.partial(
      augment.single_view, config=augment.AugmentConfig(size=config.dataset.image_size, **config.augment)
    ),
    loss=functools.partial(cross_entropy_loss, label_smoothing=config.supervised.label_smoothing),
    views_per_image=1,
  )
