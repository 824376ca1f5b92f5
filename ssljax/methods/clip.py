"""CLIP (Radford et al. 2021): an image tower and a causal text tower trained by the symmetric InfoNCE of the
global batch's image-text pairs (`losses.clip_loss`) with a learnable temperature: log-scale initialised at
log(1 / 0.07) and, after every update, clamped to [0, log 100] as open_clip does (so the scale never exceeds 100)."""

import functools
import math

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, image_text

SCHEMA = {**image_text.PAIR_SCHEMA, "init_temperature": NUMBER, "max_logit_scale": NUMBER}


def clamp_logit_scale(params, model_state, step, rng, *, maximum: float):
  """open_clip's `logit_scale.clamp_(0, log(100))` after the optimizer step (the parameter named "logit_scale",
  wherever a wrapper puts the model)."""
  del step, rng

  def leaf(path, p):
    named = str(getattr(path[-1], "key", path[-1])) == "logit_scale"
    return jnp.clip(p, 0.0, math.log(maximum)) if named else p

  return jax.tree_util.tree_map_with_path(leaf, params), model_state


def build(config, info) -> Method:
  return image_text.build_method(
    config,
    info,
    scalars={"logit_scale": math.log(1.0 / config.clip.init_temperature)},
    loss=losses.clip_loss,
    scalar_values=lambda outputs: (jnp.exp(outputs["logit_scale"]),),
    post_update=functools.partial(clamp_logit_scale, maximum=config.clip.max_logit_scale),
  )
