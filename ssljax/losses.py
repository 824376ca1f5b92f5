"""Self-supervised losses as pure functions of embeddings.

All similarities and log-sum-exps are computed in float32 whatever the input dtype, so bf16 activations are safe.
Under `jax.jit` with a batch-sharded input the matrix products below span the *global* batch: every anchor sees
every other example of the step as a negative, as in SimCLR's cross-replica negatives.
"""

import jax
import jax.numpy as jnp


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows of `x` scaled to unit norm in float32 (the norm floored at `eps` like tf.math.l2_normalize)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _cross_entropy(logits: jax.Array, target_index: jax.Array) -> jax.Array:
  """Per-row softmax cross-entropy of `logits` [M, K] against integer targets [M]."""
  positive = jnp.take_along_axis(logits, target_index[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(logits, axis=-1) - positive


def nt_xent(z_a: jax.Array, z_b: jax.Array, temperature: float = 0.1) -> jax.Array:
  """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, Algorithm 1).

  Each of the 2N views is an anchor whose positive is the other view of its image and whose negatives are the
  remaining 2N - 2 views; the similarity is the cosine similarity divided by `temperature`.

  Args:
    z_a: [N, D] projections of the first view of each image.
    z_b: [N, D] projections of the second view, row i pairs with `z_a[i]`.
    temperature: softmax temperature tau > 0.

  Returns:
    Scalar float32 loss averaged over all 2N anchors. google-research/simclr's `add_contrastive_loss` returns
    the sum of its two per-view means, which is exactly twice this value.
  """
  if z_a.ndim != 2 or z_a.shape != z_b.shape:
    raise ValueError(f"nt_xent: z_a and z_b must both be [N, D], got {z_a.shape} and {z_b.shape}")
  n = z_a.shape[0]
  z = _l2_normalize(jnp.concatenate([z_a, z_b], axis=0))
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  positive_index = (jnp.arange(2 * n) + n) % (2 * n)
  return jnp.mean(_cross_entropy(logits, positive_index))


def info_nce(
  query: jax.Array,
  key: jax.Array,
  negatives: jax.Array | None = None,
  temperature: float = 0.1,
) -> jax.Array:
  """InfoNCE (van den Oord et al. 2018) with cosine similarity: classify `key[i]` among candidates for `query[i]`.

  Args:
    query: [N, D] anchors.
    key: [N, D] positives, `key[i]` for `query[i]`.
    negatives: optional [K, D] negatives shared by all queries (e.g. a MoCo queue). Without them the other
      N - 1 keys of the batch are the negatives (the CLIP / one-directional in-batch form).
    temperature: softmax temperature tau > 0.

  Returns:
    Scalar float32 loss averaged over the N queries.
  """
  if query.ndim != 2 or query.shape != key.shape:
    raise ValueError(f"info_nce: query and key must both be [N, D], got {query.shape} and {key.shape}")
  q, k = _l2_normalize(query), _l2_normalize(key)
  if negatives is None:
    logits = (q @ k.T) / temperature
    return jnp.mean(_cross_entropy(logits, jnp.arange(q.shape[0])))
  if negatives.ndim != 2 or negatives.shape[1] != q.shape[1]:
    raise ValueError(f"info_nce: negatives must be [K, {q.shape[1]}], got {negatives.shape}")
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  logits = jnp.concatenate([positive, q @ _l2_normalize(negatives).T], axis=1) / temperature
  return jnp.mean(_cross_entropy(logits, jnp.zeros(q.shape[0], jnp.int32)))


def patch_statistics(patches):
  """Per-patch mean and standard deviation [..., 1] as MAE's norm_pix target uses them: the unbiased variance
  (ddof=1, torch's `.var()` in the reference) plus 1e-6 under the square root."""
  mean = patches.mean(axis=-1, keepdims=True)
  return mean, jnp.sqrt(patches.var(axis=-1, keepdims=True, ddof=1) + 1e-6)


def mae_loss(pred, target, mask, norm_pix: bool = True):
  """MAE's reconstruction loss: per-patch mean squared error, averaged over the removed patches only.

  Args:
    pred, target: [N, L, P] predicted and true patches (`ssljax.models.patchify` layout).
    mask: [N, L], 1 for removed patches, 0 for visible ones.
    norm_pix: normalise every target patch by its own mean and variance first (`patch_statistics`).

  Returns:
    Scalar float32. Under jit with batch-sharded inputs both sums run over the global batch.
  """
  pred, target, mask = (x.astype(jnp.float32) for x in (pred, target, mask))
  if norm_pix:
    mean, std = patch_statistics(target)
    target = (target - mean) / std
  per_patch = jnp.mean((pred - target) ** 2, axis=-1)
  return jnp.sum(per_patch * mask) / jnp.sum(mask)
