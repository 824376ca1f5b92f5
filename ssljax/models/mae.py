"""Masked autoencoder (He et al. 2022): the ViT encoder sees only the visible patches (no mask tokens), a light
decoder with its own width, depth and sin-cos position embeddings sees the encoded tokens plus mask tokens
and predicts the pixels of every patch."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.models import vit


@jax.custom_vjp
def gather_tokens(x, ids, inverse):
  """x[n, ids[n, k]] for tokens x [N, L, D], where ids [N, K] are the first K entries of a per-example
  permutation of the L positions and inverse [N, L] is that permutation's inverse.

  Same value as `jnp.take_along_axis`; the gradient gathers through the inverse permutation (zeros for the
  positions not taken) instead of autodiff's scatter-add, which accelerators run far slower than a gather."""
  return jnp.take_along_axis(x, ids[..., None], axis=1)


def _gather_tokens_forward(x, ids, inverse):
  return gather_tokens(x, ids, inverse), inverse


def _gather_tokens_backward(inverse, grad):
  padded = jnp.pad(grad, ((0, 0), (0, inverse.shape[1] - grad.shape[1]), (0, 0)))
  return jnp.take_along_axis(padded, inverse[..., None], axis=1), None, None


gather_tokens.defvjp(_gather_tokens_forward, _gather_tokens_backward)


def random_masking(x, mask_ratio: float, rng):
  """Per-example random subset of tokens, as in the reference (argsort of uniform noise).

  Args:
    x: tokens [N, L, D].
    mask_ratio: fraction of tokens removed; int(L * (1 - mask_ratio)) tokens are kept.

  Returns:
    visible [N, K, D] (the kept tokens in shuffled order), mask [N, L] (1 = removed, 0 = kept, in the original
    order) and ids_restore [N, L] (for every original position, its index in the shuffled order).
  """
  if not 0.0 < mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
  batch, length, _ = x.shape
  keep = int(length * (1 - mask_ratio))
  ids_shuffle = jnp.argsort(jax.random.uniform(rng, (batch, length)), axis=1)
  ids_restore = jnp.argsort(ids_shuffle, axis=1)
  visible = gather_tokens(x, ids_shuffle[:, :keep], ids_restore)
  mask = (ids_restore >= keep).astype(jnp.float32)
  return visible, mask, ids_restore


class MAEDecoder(nn.Module):
  """Encoded tokens [N, 1 + K, D_enc] and ids_restore [N, L] -> predicted patches [N, L, patch_dim]."""

  width: int
  depth: int
  num_heads: int
  patch_dim: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, encoded, ids_restore, train: bool = True):
    x = vit.dense(self.width, ("embed", "decoder_embed"), self.dtype, "embed")(encoded)
    mask_token = self.param(
      "mask_token",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, None, "embed")),
      (1, 1, self.width),
    )
    batch, length = ids_restore.shape
    num_masked = length + 1 - x.shape[1]
    tokens = jnp.concatenate(
      [x[:, 1:], jnp.broadcast_to(mask_token.astype(x.dtype), (batch, num_masked, self.width))], axis=1
    )
    tokens = gather_tokens(tokens, ids_restore, jnp.argsort(ids_restore, axis=1))  # Back to the patch order.
    x = jnp.concatenate([x[:, :1], tokens], axis=1)
    x = x + vit.sincos_pos_embed_2d(self.width, vit.square_grid_size(length), cls_token=True).astype(x.dtype)
    x = vit.Transformer(self.depth, self.num_heads, self.mlp_ratio, dtype=self.dtype, name="transformer")(x, train)
    x = vit.layer_norm(self.dtype, "norm")(x)
    return vit.dense(self.patch_dim, ("embed", "patch"), self.dtype, "pred")(x)[:, 1:]


class MaskedAutoencoder(nn.Module):
  """MAE around a ViT `encoder` (pool="cls").

  `__call__(images)` masks `mask_ratio` of the patches with the "masking" rng stream and returns:
    features [N, width] (the normalised class token of the visible patches), pred [N, L, p*p*C],
    target [N, L, p*p*C] (patchified images), mask [N, L] (1 = removed).
  `encode(images)` is the encoder on all patches (evaluation features).
  """

  encoder: vit.ViT
  decoder: MAEDecoder
  mask_ratio: float = 0.75

  def __call__(self, images, train: bool = True, mask_ratio: float | None = None):
    tokens = self.encoder.embed_patches(images)
    ratio = self.mask_ratio if mask_ratio is None else mask_ratio
    visible, mask, ids_restore = random_masking(tokens, ratio, self.make_rng("masking"))
    encoded = self.encoder.encode_tokens(visible, train)
    return {
      "features": encoded[:, 0],
      "pred": self.decoder(encoded, ids_restore, train),
      "target": vit.patchify(images, self.encoder.patch_size),
      "mask": mask,
    }

  def encode(self, images):
    return self.encoder(images, train=False)
