"""VICReg (Bardes, Ponce & LeCun 2022): variance, invariance and covariance regularisation of two views'
projections, with no teacher, predictor or negatives; the expander 8192 x 3 and coefficients 25 / 25 / 1
(facebookresearch/vicreg). Each term is logged: the variance hinge at 0 and the covariance falling show that the
projections neither collapse nor stay redundant."""

import functools

from ssljax import losses, models
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, siamese

SCHEMA = {"proj_dim": int, "proj_layers": int, "sim_coeff": NUMBER, "std_coeff": NUMBER, "cov_coeff": NUMBER}


def vicreg_objective(outputs, batch, step, section):
  del batch, step
  z_a, z_b = siamese.split_views(outputs["projections"])
  loss = losses.vicreg_loss(z_a, z_b, section.sim_coeff, section.std_coeff, section.cov_coeff)
  metrics = losses.vicreg_terms(z_a, z_b)  # The same values the loss combines (the compiler computes them once).
  return loss, {**metrics, "embedding_std": losses.embedding_std(outputs["projections"])}


def build(config, info) -> Method:
  del info
  section = config.vicreg
  # The reference's expander: (Linear with bias -> BN -> ReLU) x (layers - 1), Linear without bias.
  projector = models.MLPHead(
    section.proj_dim, section.proj_layers, section.proj_dim, hidden_bias=True, name="projector"
  )
  return siamese.build_siamese(config, projector=projector, loss=functools.partial(vicreg_objective, section=section))
