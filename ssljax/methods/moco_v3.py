"""MoCo v3 (Chen, Xie & He 2021): a query encoder with projector and predictor against an EMA key encoder
(momentum 0.99 -> 1, cosine per step); symmetric InfoNCE over the keys of the global batch, times 2 tau. For a ViT
the random patch projection stays frozen, as in the paper (its "stop-grad-conv1")."""

import functools

import jax.numpy as jnp

from ssljax import losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER, Optional
from ssljax.methods import Method, freeze_paths, siamese

SCHEMA = {
  "proj_dim": int,
  "hidden_dim": int,
  "proj_layers": int,
  "temperature": NUMBER,
  "momentum": NUMBER,
  "final_momentum": NUMBER,
  "freeze_patch_embed": bool,
  "predictor_last_bn": Optional(bool),  # Default: True for a ViT, False for a ResNet (moco-v3's two builders).
}


def moco_v3_objective(outputs, batch, step, temperature: float):
  del batch, step
  loss = siamese.symmetric(functools.partial(losses.moco_v3_loss, temperature=temperature), outputs)
  return loss, {"embedding_std": losses.embedding_std(outputs["predictions"])}


def build(config, info) -> Method:
  section = config.moco_v3
  if section.freeze_patch_embed and config.model.name != "vit":
    raise ConfigError("config.moco_v3.freeze_patch_embed: needs a ViT encoder (config.model.name='vit')")
  # facebookresearch/moco-v3 `_build_mlp`: (Dense -> BN -> ReLU) hidden layers, no biases; the projector ends in
  # BN(affine=False). The predictor has 2 layers and ends in BN(affine=False) for a ViT (`MoCo_ViT`), in a plain
  # Dense for a ResNet (`MoCo_ResNet`'s last_bn=False). Projector: 2 layers for ResNet, 3 for ViT.
  predictor_last_bn = section.get("predictor_last_bn")
  if predictor_last_bn is None:
    predictor_last_bn = config.model.name == "vit"
  mlp = functools.partial(models.MLPHead, section.proj_dim, hidden_dim=section.hidden_dim)
  return siamese.build_siamese(
    config,
    projector=mlp(num_layers=section.proj_layers, last_norm="plain", name="projector"),
    predictor=mlp(num_layers=2, last_norm="plain" if predictor_last_bn else "none", name="predictor"),
    loss=functools.partial(moco_v3_objective, temperature=section.temperature),
    teacher_momentum=siamese.teacher_momentum(section, info),
    frozen=_frozen_patch_embed if section.freeze_patch_embed else None,
  )


def _frozen_patch_embed(params, step):
  del step  # Frozen for the whole run.
  return freeze_paths(params, ("patch_embed",), jnp.array(True))
