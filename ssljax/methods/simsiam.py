"""SimSiam (Chen & He 2021): no teacher and no negatives; each view's prediction matches the other view's
projection behind a stop-gradient, and the predictor keeps a constant learning rate (the paper's `fix_pred_lr`)."""

from ssljax import losses, models
from ssljax.methods import Method, siamese

SCHEMA = {"proj_dim": int, "proj_layers": int, "pred_hidden_dim": int, "fix_predictor_lr": bool}


def simsiam_objective(outputs, batch, step):
  del batch, step
  loss = 0.5 * siamese.symmetric(losses.simsiam_loss, outputs)
  return loss, {"embedding_std": losses.embedding_std(outputs["projections"])}


def build(config, info) -> Method:
  del info
  section = config.simsiam
  # Projector: (Dense -> BN -> ReLU) x (layers - 1) at the projection width, Dense -> BN(affine=False).
  # Predictor: a bottleneck, Dense -> BN -> ReLU -> Dense (with bias).
  projector = models.MLPHead(
    section.proj_dim, section.proj_layers, section.proj_dim, last_norm="plain", name="projector"
  )
  predictor = models.MLPHead(section.proj_dim, 2, section.pred_hidden_dim, last_bias=True, name="predictor")
  return siamese.build_siamese(
    config,
    projector=projector,
    predictor=predictor,
    loss=simsiam_objective,
    optimizer_groups={"predictor": {"schedule": "constant"}} if section.fix_predictor_lr else {},
  )
