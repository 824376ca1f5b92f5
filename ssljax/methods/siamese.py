"""What BYOL, SimSiam, MoCo v3, Barlow Twins and VICReg share: two augmented views, an encoder, a projector and
(BYOL, SimSiam, MoCo v3) a predictor, each view's prediction matched against the other view's projection (from an
EMA teacher, or the network itself behind a stop-gradient); and the teacher-momentum settings of the methods that
have one."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import augment, models
from ssljax.methods import Method, cosine_momentum


class SiameseModel(nn.Module):
  """views [2N] (view-major) -> {"features", "projections", "predictions" (with a predictor)} [2N, ...]; `teach`
  -> the projections of the same views through the teacher's encoder and projector.

  Each view goes through the networks on its own, as in every reference (BYOL's per-view `apply_once_fn`,
  SimSiam's and MoCo v3's two forward calls): BatchNorm normalises a view by its own batch statistics, not by
  statistics pooled over both views (which differ when the views are augmented differently), and its running
  averages take one update per view."""

  encoder: nn.Module
  projector: nn.Module
  predictor: nn.Module | None = None

  def __call__(self, views, train: bool = True, teacher=None):
    del teacher  # The loss pairs the teacher's outputs with ours; nothing is stored.

    def forward(view):
      features = self.encoder(view, train=train)
      outputs = {"features": features, "projections": self.projector(features, train=train)}
      if self.predictor is not None:
        outputs["predictions"] = self.predictor(outputs["projections"], train=train)
      return outputs

    return per_view(forward, views)

  def encode(self, images):
    return self.encoder(images, train=False)

  def teach(self, views):
    def forward(view):
      features = self.encoder(view, train=models.teacher_train_mode(self.encoder))
      return {"projections": self.projector(features, train=True)}

    return per_view(forward, views)


def per_view(forward, views, num_views: int = 2):
  """`forward` (a dict of [n, ...] outputs) applied to each of the `num_views` view-major parts of `views`
  separately, its outputs concatenated back in view-major order."""
  outputs = [forward(view) for view in jnp.split(views, num_views)]
  return jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)


def split_views(x):
  """The two view-major halves of `x` [2N, ...]."""
  first, second = jnp.split(x, 2)
  return first, second


def symmetric(pair_loss, outputs, target_key: str = "projections"):
  """pair_loss(p1, t2) + pair_loss(p2, t1): each view's prediction against the other view's target (the
  teacher's `target_key` outputs if there is a teacher, else the network's own)."""
  p1, p2 = jnp.split(outputs["predictions"], 2)
  t1, t2 = jnp.split((outputs.get("teacher") or outputs)[target_key], 2)
  return pair_loss(p1, t2) + pair_loss(p2, t1)


def teacher_momentum(section, info) -> Any:
  """The per-step cosine schedule from `section.momentum` to `section.final_momentum` over the run."""
  return cosine_momentum(section.momentum, section.get("final_momentum", 1.0), info.num_steps)


def build_siamese(config, projector, loss, predictor=None, **method_fields) -> Method:
  """A `Method` of `SiameseModel` on the config's two views (`config.views` may make them asymmetric)."""
  encoder = models.build_encoder(config.model, config.dataset.image_size, jnp.dtype(config.dtype))
  views, _, _ = augment.view_configs(config)
  return Method(
    model=SiameseModel(encoder, projector, predictor),
    make_inputs=functools.partial(augment.global_views, views=views),
    loss=loss,
    views_per_image=2,
    crops=tuple(views),
    **method_fields,
  )
