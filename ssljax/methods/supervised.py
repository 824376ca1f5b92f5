"""Supervised training of an encoder plus a linear head, through the same train step as the self-supervised
methods: fine-tuning (MAE, SimCLR semi-supervised), LoRA, and the papers' linear evaluation (`frozen_encoder`: the
encoder runs in inference mode under stop_gradient and only the head trains)."""

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax import augment, models
from ssljax.config import ConfigError
from ssljax.methods import Method


class Classifier(nn.Module):
  """encoder -> [BatchNorm without affine] -> linear head.

  Attributes:
    head_init_std: the head kernel's N(0, std^2) (MAE fine-tuning 2e-5, the linear protocols 0.01: the references'
      `trunc_normal_` cuts at +-2 absolute, so at these stds it is a plain normal); 0 starts it at zero (SimCLR's
      `zero_init_logits_layer`); "fan_in": N(0, 1/fan_in) truncated at +-2 std (Haiku's Linear default: BYOL's
      linear evaluation). The bias starts at zero.
    head_norm: MAE's linear probing puts a BatchNorm without scale and offset before the head (eps 1e-6).
    frozen_encoder: linear evaluation: the encoder runs in inference mode (its BatchNorm statistics fixed) and no
      gradient reaches it.
  """

  encoder: nn.Module
  num_classes: int
  head_init_std: float | str = 2e-5
  head_norm: bool = False
  frozen_encoder: bool = False

  @nn.compact
  def __call__(self, images, train: bool = True):
    if self.frozen_encoder:
      features = jax.lax.stop_gradient(self.encoder(images, train=False))
    else:
      features = self.encoder(images, train=train)
    head_input = features
    if self.head_norm:
      norm = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-6, use_scale=False, use_bias=False)
      head_input = norm(features.astype(jnp.float32))
    if self.head_init_std == "fan_in":
      init = nn.initializers.truncated_normal(features.shape[-1] ** -0.5)
    else:
      init = nn.initializers.normal(self.head_init_std) if self.head_init_std else nn.initializers.zeros
    head = nn.Dense(self.num_classes, kernel_init=init, name="head")
    return {"features": features, "logits": head(head_input)}

  def encode(self, images):
    return self.encoder(images, train=False)


def cross_entropy_loss(outputs, batch, step, label_smoothing: float):
  del step
  logits = outputs["logits"].astype(jnp.float32)
  targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], logits.shape[-1]), label_smoothing)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return optax.softmax_cross_entropy(logits, targets).mean(), {"train_accuracy": accuracy}


def _frozen_but(trained) -> Callable:
  """A `Method.frozen` map freezing every parameter but those with a path key for which `trained(key)` holds."""

  def frozen(params, step=None):
    del step

    def leaf(path, _):
      return jnp.array(not any(trained(str(getattr(k, "key", k))) for k in path))

    return jax.tree_util.tree_map_with_path(leaf, params)

  return frozen


# LoRA: only the adapters (modules "*_lora") and the head train. Linear evaluation: only the head.
lora_frozen = _frozen_but(lambda key: key.endswith("_lora") or key == "head")
head_only_frozen = _frozen_but(lambda key: key == "head")


def build(config, info) -> Method:
  dtype = jnp.dtype(config.dtype)
  encoder = models.build_encoder(config.model, config.dataset.image_size, dtype)
  settings = config.supervised
  frozen_encoder = settings.get("frozen_encoder", False)
  if frozen_encoder and config.model.get("lora"):
    raise ConfigError("config.supervised.frozen_encoder: a frozen encoder cannot also train LoRA adapters")
  view = augment.AugmentConfig(size=config.dataset.image_size, **config.augment)
  return Method(
    frozen=head_only_frozen if frozen_encoder else lora_frozen if config.model.get("lora") else None,
    model=Classifier(
      encoder,
      info.num_classes,
      head_init_std=settings.get("head_init_std", 2e-5),
      head_norm=settings.get("head_norm", False),
      frozen_encoder=frozen_encoder,
    ),
    make_inputs=functools.partial(augment.single_view, config=view),
    loss=functools.partial(cross_entropy_loss, label_smoothing=config.supervised.label_smoothing),
    views_per_image=1,
    crops=(view,),
  )
