"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of two views' batch-standardised projections is
driven to the identity, with no teacher, predictor or negatives; projector 8192-8192-8192 and LARS with a
separate learning rate for biases and BatchNorm parameters (facebookresearch/barlowtwins)."""

import functools

from ssljax import losses, models
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, siamese

SCHEMA = {"proj_dim": int, "proj_layers": int, "lambda_": NUMBER}


def barlow_twins_objective(outputs, batch, step, lambda_: float):
  del batch, step
  z_a, z_b = siamese.split_views(outputs["projections"])
  return losses.barlow_twins_loss(z_a, z_b, lambda_), {"embedding_std": losses.embedding_std(outputs["projections"])}


def build(config, info) -> Method:
  del info
  section = config.barlow_twins
  # The reference's projector: (Linear without bias -> BN -> ReLU) x (layers - 1), Linear without bias; the loss
  # standardises its output with a BatchNorm(affine=False) of its own (`losses.batch_standardize`).
  projector = models.MLPHead(section.proj_dim, section.proj_layers, section.proj_dim, name="projector")
  return siamese.build_siamese(
    config, projector=projector, loss=functools.partial(barlow_twins_objective, lambda_=section.lambda_)
  )
