"""Image-text two-tower models (CLIP, Radford et al. 2021; SigLIP, Zhai et al. 2023): any image encoder beside a
text transformer built from the ViT's blocks (one transformer, two uses), each followed by a linear projection to
the shared space and l2-normalised, and the loss's learnable scalars."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax.models.language import TextTransformer

__all__ = ["TextTransformer", "TwoTower"]


def _normalized(x):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


class TwoTower(nn.Module):
  """`encoder` (images -> [N, F]) and `text_encoder` (tokens -> [N, W]), each projected to `embed_dim` by a
  bias-free linear layer (CLIP's `visual.proj` / `text_projection`, N(0, 1 / width)) and l2-normalised.

  `scalars` {name: initial value} are the loss's learnable scalars (CLIP: logit_scale = log(1 / 0.07); SigLIP:
  t' = log 10 and b = -10), float32 parameters returned by the forward pass beside the embeddings."""

  encoder: nn.Module
  text_encoder: nn.Module
  embed_dim: int
  scalars: tuple = ()  # ((name, initial value), ...): a tuple, so the module stays hashable.
  dtype: Any = jnp.float32

  def setup(self):
    init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")  # N(0, 1 / width).
    self.image_proj = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init, dtype=self.dtype)
    self.text_proj = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init, dtype=self.dtype)
    self.scalar_params = {
      name: self.param(name, nn.initializers.constant(np.float32(value)), (), jnp.float32)
      for name, value in self.scalars
    }

  def __call__(self, inputs, train: bool = True):
    """{"image" [N, H, W, C], "text" [N, L]} -> {"features" (the image trunk's, which the online probe reads),
    "image_emb", "text_emb" [N, embed_dim] unit rows, and each scalar}."""
    features = self.encoder(inputs["image"], train=train)
    return {
      "features": features,
      "image_emb": _normalized(self.image_proj(features)),
      "text_emb": _normalized(self.text_proj(self.text_encoder(inputs["text"], train=train))),
      **self.scalar_params,
    }

  def encode(self, images):
    """The image trunk's features (what the image evaluators read, as CLIP's linear probes do)."""
    return self.encoder(images, train=False)

  def embed(self, inputs):
    """Inference-mode embeddings {"image_emb", "text_emb"} of {"image"} and / or {"text"} (zero-shot, retrieval)."""
    out = {}
    if "image" in inputs:
      out["image_emb"] = _normalized(self.image_proj(self.encoder(inputs["image"], train=False)))
    if "text" in inputs:
      out["text_emb"] = _normalized(self.text_proj(self.text_encoder(inputs["text"], train=False)))
    return out
