"""SigLIP (Zhai et al. 2023): the two towers of CLIP trained by a sigmoid loss on every image-text pair of the
global batch (`losses.siglip_loss`), with each device's texts passed round the ring of devices rather than
gathered; learnable t' (t = exp(t'), initialised at log 10) and bias b (initialised at -10, so the many negatives
start with a small loss)."""

import math

import jax.numpy as jnp

from ssljax import losses
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, image_text

SCHEMA = {**image_text.PAIR_SCHEMA, "init_temperature": NUMBER, "init_bias": NUMBER}


def build(config, info) -> Method:
  return image_text.build_method(
    config,
    info,
    scalars={"t_prime": math.log(config.siglip.init_temperature), "bias": config.siglip.init_bias},
    loss=losses.siglip_loss,
    scalar_values=lambda outputs: (jnp.exp(outputs["t_prime"]), outputs["bias"]),
  )
