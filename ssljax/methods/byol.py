"""BYOL (Grill et al. 2020): the online network's predictor regresses the EMA target network's projection of the
other view; symmetric loss, target momentum 0.996 -> 1 (cosine, per step), asymmetric views."""

import functools

from ssljax import losses, models
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, siamese

SCHEMA = {
  "proj_dim": int,
  "hidden_dim": int,
  "momentum": NUMBER,
  "final_momentum": NUMBER,
}


def byol_objective(outputs, batch, step):
  del batch, step
  loss = siamese.symmetric(losses.byol_loss, outputs)
  return loss, {"embedding_std": losses.embedding_std(outputs["projections"])}


def build(config, info) -> Method:
  section = config.byol
  # BYOL's MLPs (deepmind-research byol `networks.py`): Dense with bias -> BN -> ReLU -> Dense without bias, hidden
  # 4096, output 256 on ImageNet.
  mlp = functools.partial(models.MLPHead, section.proj_dim, 2, section.hidden_dim, hidden_bias=True, last_bias=False)
  return siamese.build_siamese(
    config,
    projector=mlp(name="projector"),
    predictor=mlp(name="predictor"),
    loss=byol_objective,
    teacher_momentum=siamese.teacher_momentum(section, info),
  )
