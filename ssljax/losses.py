"""Self-supervised losses as pure functions of embeddings.

All similarities and log-sum-exps are computed in float32 whatever the input dtype, so bf16 activations are safe.
Under `jax.jit` with a batch-sharded input the matrix products below span the *global* batch: every anchor sees
every other example of the step as a negative, as in SimCLR's cross-replica negatives.
"""

import functools

import jax
import jax.numpy as jnp
import optax


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows of `x` scaled to unit norm in float32 (the norm floored at `eps` like tf.math.l2_normalize)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _masked_logits(anchors, candidates, self_index, first_column: int | jax.Array, temperature: float):
  """anchors [M, D] . candidates [B, D] / temperature, with -inf where column `first_column + j` is the
  anchor's own `self_index` (or past `num_candidates`, see `_blockwise_lse`)."""
  logits = (anchors @ candidates.T) / temperature
  columns = first_column + jnp.arange(candidates.shape[0])
  return jnp.where(columns[None, :] == self_index[:, None], -jnp.inf, logits)


def _dense_lse(anchors, candidates, self_index, temperature: float):
  return jax.nn.logsumexp(_masked_logits(anchors, candidates, self_index, 0, temperature), axis=-1)


def _blocks(x: jax.Array, block_size: int, fill=0) -> jax.Array:
  """[K, ...] -> [ceil(K / block_size), block_size, ...], padded with `fill`."""
  pad = -x.shape[0] % block_size
  x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
  return x.reshape(-1, block_size, *x.shape[1:])


def _tile_logits(anchors, c, self_index, col_block, block_size: int, num_candidates: int, temperature: float):
  """Logits of every anchor against column block `col_block`, with -inf for self and padding columns."""
  logits = _masked_logits(anchors, c, self_index, col_block * block_size, temperature)
  if num_candidates % block_size == 0:  # No padded columns.
    return logits
  padding = col_block * block_size + jnp.arange(block_size) >= num_candidates
  return jnp.where(padding[None, :], -jnp.inf, logits)


def _zeros(like: jax.Array, *inputs: jax.Array) -> jax.Array:
  """Zeros shaped like `like` that depend on `inputs`: inside `jax.shard_map` a scan's carry must vary over the
  same mesh axes as the values the loop adds into it."""
  zeros = jnp.zeros_like(like)
  for x in inputs:
    zeros = zeros + 0 * x.reshape(-1)[0].astype(zeros.dtype)
  return zeros


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _blockwise_lse(anchors, candidates, self_index, temperature: float, block_size: int):
  """`_dense_lse` computed one column block at a time: each loop trip takes every anchor against `block_size`
  candidates ([M, block_size] logits) and updates a running log-sum-exp, so the [M, K] matrix never exists
  (memory O(M x block_size + (M + K) D)) and the loop has only ceil(K / block_size) trips, each a large matrix
  product (few trips matter on GPUs, where every trip costs launch latency). The backward pass recomputes each
  block (flash-attention style) in one loop of the same trips."""
  return _blockwise_lse_forward(anchors, candidates, self_index, temperature, block_size)[0]


def _blockwise_lse_forward(anchors, candidates, self_index, temperature, block_size):
  num_candidates = candidates.shape[0]
  col_blocks = _blocks(candidates, block_size)

  def visit(carry, j):
    running_max, running_sum = carry
    logits = _tile_logits(anchors, col_blocks[j], self_index, j, block_size, num_candidates, temperature)
    new_max = jnp.maximum(running_max, logits.max(axis=1))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.exp(logits - new_max[:, None]).sum(axis=1)
    return (new_max, running_sum), None

  zeros = _zeros(anchors[:, 0], anchors, col_blocks, self_index)
  floor = zeros + jnp.finfo(jnp.float32).min  # Finite: exp(floor - floor) must not be NaN.
  (row_max, row_sum), _ = jax.lax.scan(visit, (floor, zeros), jnp.arange(len(col_blocks)))
  lse = row_max + jnp.log(row_sum)
  return lse, (anchors, candidates, self_index, lse)


def _blockwise_lse_backward(temperature, block_size, residuals, lse_cotangent):
  anchors, candidates, self_index, lse = residuals
  num_candidates = candidates.shape[0]
  col_blocks = _blocks(candidates, block_size)
  scale = lse_cotangent[:, None] / temperature  # d loss / d lse * d logit / d dot.

  def visit(d_anchors, j):
    logits = _tile_logits(anchors, col_blocks[j], self_index, j, block_size, num_candidates, temperature)
    weights = jnp.exp(logits - lse[:, None]) * scale  # softmax * d loss / d dot, [M, block_size].
    return d_anchors + weights @ col_blocks[j], weights.T @ anchors

  zeros = _zeros(anchors, anchors, col_blocks, self_index, lse, lse_cotangent)
  d_anchors, d_cols = jax.lax.scan(visit, zeros, jnp.arange(len(col_blocks)))
  return d_anchors, d_cols.reshape(-1, candidates.shape[1])[:num_candidates], None


_blockwise_lse.defvjp(_blockwise_lse_forward, _blockwise_lse_backward)


def contrastive_lse(anchors, candidates, self_index, temperature: float, block_size: int | None = None):
  """log sum_j exp(anchors[i] . candidates[j] / temperature) over j != self_index[i] (-1: no exclusion), [M].

  Dense ([M, K] logits) when `block_size` is None, else blockwise (`_blockwise_lse`); equal to 1e-5."""
  if block_size is None:
    return _dense_lse(anchors, candidates, self_index, temperature)
  return _blockwise_lse(anchors, candidates, self_index, temperature, block_size)


def _gather(x: jax.Array, axis_name):
  """All rows of `x` over the devices of `axis_name` (inside `jax.shard_map`), in device order."""
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _global_mean(per_anchor: jax.Array, axis_name) -> jax.Array:
  if axis_name is None:
    return jnp.mean(per_anchor)
  return jax.lax.psum(jnp.sum(per_anchor), axis_name) / (per_anchor.shape[0] * jax.lax.axis_size(axis_name))


def nt_xent(
  z_a: jax.Array, z_b: jax.Array, temperature: float = 0.1, *, block_size: int | None = None, axis_name=None
) -> jax.Array:
  """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, Algorithm 1).

  Each of the 2N views is an anchor whose positive is the other view of its image and whose negatives are the
  remaining 2N - 2 views; the similarity is the cosine similarity divided by `temperature`.

  Args:
    z_a: [N, D] projections of the first view of each image.
    z_b: [N, D] projections of the second view, row i pairs with `z_a[i]`.
    temperature: softmax temperature tau > 0.
    block_size: if set, the loss is computed over blocks of `block_size` columns of the similarity matrix (all
      anchors at once) with an online log-sum-exp and a backward pass that recomputes them, so the (2N)^2 matrix
      never exists: memory ~ 2N x block_size floats.
    axis_name: inside `jax.shard_map`, the mesh axis (or axes) the batch is split over: `z_a`, `z_b` are this
      device's rows, each device keeps its own anchors and gathers all views as candidates ([2N, D]: small
      next to the similarities), and the returned loss is the global one on every device.

  Returns:
    Scalar float32 loss averaged over all 2N anchors. google-research/simclr's `add_contrastive_loss` returns
    the sum of its two per-view means, which is exactly twice this value (the SimCLR method trains on that sum:
    `ssljax/methods/simclr.py`).
  """
  if z_a.ndim != 2 or z_a.shape != z_b.shape:
    raise ValueError(f"nt_xent: z_a and z_b must both be [N, D], got {z_a.shape} and {z_b.shape}")
  n_local = z_a.shape[0]
  z_a, z_b = l2_normalize(z_a), l2_normalize(z_b)
  candidates = jnp.concatenate([_gather(z_a, axis_name), _gather(z_b, axis_name)])  # Global order: all a, all b.
  n = candidates.shape[0] // 2
  offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * n_local
  rows = offset + jnp.arange(n_local)
  lse = contrastive_lse(
    jnp.concatenate([z_a, z_b]), candidates, jnp.concatenate([rows, n + rows]), temperature, block_size
  )
  positive = jnp.sum(z_a * z_b, axis=-1) / temperature
  return _global_mean(lse - jnp.concatenate([positive, positive]), axis_name)


def info_nce(
  query: jax.Array,
  key: jax.Array,
  negatives: jax.Array | None = None,
  temperature: float = 0.1,
  *,
  block_size: int | None = None,
  axis_name=None,
) -> jax.Array:
  """InfoNCE (van den Oord et al. 2018) with cosine similarity: classify `key[i]` among candidates for `query[i]`.

  Args:
    query: [N, D] anchors.
    key: [N, D] positives, `key[i]` for `query[i]`.
    negatives: optional [K, D] negatives shared by all queries (e.g. a MoCo queue). Without them the other
      N - 1 keys of the batch are the negatives (the CLIP / one-directional in-batch form).
    temperature: softmax temperature tau > 0.
    block_size, axis_name: as for `nt_xent` (the in-batch keys are gathered over `axis_name`; a queue of
      negatives is the same on every device).

  Returns:
    Scalar float32 loss averaged over the N queries.
  """
  if query.ndim != 2 or query.shape != key.shape:
    raise ValueError(f"info_nce: query and key must both be [N, D], got {query.shape} and {key.shape}")
  q, k = l2_normalize(query), l2_normalize(key)
  positive = jnp.sum(q * k, axis=-1) / temperature
  no_self = jnp.full(q.shape[0], -1)
  if negatives is None:
    lse = contrastive_lse(q, _gather(k, axis_name), no_self, temperature, block_size)  # Includes the positive.
  else:
    if negatives.ndim != 2 or negatives.shape[1] != q.shape[1]:
      raise ValueError(f"info_nce: negatives must be [K, {q.shape[1]}], got {negatives.shape}")
    negatives = l2_normalize(negatives)
    if axis_name is not None:  # Same queue on every device; its gradient is summed over them (pcast's transpose).
      negatives = jax.lax.pcast(negatives, axis_name, to="varying")
    negative_lse = contrastive_lse(q, negatives, no_self, temperature, block_size)
    lse = jnp.logaddexp(positive, negative_lse)
  return _global_mean(lse - positive, axis_name)


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


def bernoulli_nll(reconstruction: jax.Array, x: jax.Array) -> jax.Array:
  """Binary cross-entropy of targets x in [0, 1] under pixel probabilities `reconstruction` in (0, 1), summed over
  every axis but the first: [N, ...] -> [N]. Each log is clamped at -100, as torch's `binary_cross_entropy`."""
  log_p = jnp.maximum(jnp.log(reconstruction), -100.0)
  log_not_p = jnp.maximum(jnp.log1p(-reconstruction), -100.0)
  return -jnp.sum((x * log_p + (1.0 - x) * log_not_p).reshape(x.shape[0], -1), axis=-1)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over the latents: [N, Z] -> [N] (Kingma & Welling, appendix B)."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), axis=-1)


def vae_loss(reconstruction, x, mean, logvar, beta: float = 1.0) -> jax.Array:
  """The negative ELBO of a VAE with Bernoulli pixels (beta-VAE: the KL term weighted by beta), averaged over the
  batch: mean_n [BCE(reconstruction_n, x_n) summed over pixels + beta KL(q(z | x_n) || N(0, I)) summed over
  latents]. Equals pytorch/examples' VAE `loss_function` (BCE with reduction="sum" + KLD) divided by N.

  reconstruction, x: [N, ...] with reconstruction in (0, 1) and x in [0, 1]; mean, logvar: [N, Z]."""
  return jnp.mean(bernoulli_nll(reconstruction, x) + beta * gaussian_kl(mean, logvar))


def weighted_l2(prediction: jax.Array, target: jax.Array, weights: jax.Array) -> jax.Array:
  """Pathak et al.'s (2016) context-encoder reconstruction loss: the squared error weighted by `weights`, averaged
  over the elements it covers: sum(w (prediction - target)^2) / count(w > 0). prediction, target: [N, H, W, C];
  weights: [N, H, W, 1] (1 on the dropped region, the overlap band's weight around it, 0 on the context the
  encoder saw), broadcast over channels. With their central region this is their weighted `MSELoss` over it."""
  weights = jnp.broadcast_to(weights, target.shape)
  return jnp.sum(weights * jnp.square(prediction - target)) / jnp.maximum(jnp.sum(weights > 0), 1)


def rebalanced_cross_entropy(logits: jax.Array, soft_targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Zhang et al.'s (2016) colorization loss: the cross-entropy of each location's predicted distribution over the
  ab bins against its soft-encoded target, times the location's rebalancing weight v (constant: the reference
  scales the gradient by it), averaged over all locations: -sum(v * sum_q z_q log softmax(logits)_q) / count.
  logits, soft_targets: [N, H, W, Q]; weights: [N, H, W]."""
  per_location = optax.softmax_cross_entropy(logits, soft_targets)
  return jnp.mean(jax.lax.stop_gradient(weights) * per_location)


def cpc_infonce(predictions: jax.Array, targets: jax.Array, offset: int) -> jax.Array:
  """CPC v2's InfoNCE for predictions `offset` rows ahead (Henaff et al. 2020, appendix pseudocode).

  predictions: [N, H - offset, W, D], the prediction made from the context at (n, r, c) for the patch at
  (n, r + offset, c); targets: [N, H, W, D], the patch embeddings. Each prediction's logits are its dot products
  with every target of every image in the (global) batch, [N (H - offset) W, N H W]; the positive is its own
  patch. Returns the cross-entropy, averaged over the predictions."""
  n, h, w, d = targets.shape
  logits = jnp.dot(predictions.reshape(-1, d), targets.reshape(-1, d).T, preferred_element_type=jnp.float32)
  image, row, column = jnp.meshgrid(jnp.arange(n), jnp.arange(offset, h), jnp.arange(w), indexing="ij")
  labels = ((image * h + row) * w + column).reshape(-1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def embedding_std(z: jax.Array) -> jax.Array:
  """SimSiam's collapse metric: the standard deviation over the batch of the l2-normalised rows of z [N, D],
  averaged over the D dimensions. About 1/sqrt(D) for well-spread embeddings, 0 when they collapse to a point."""
  return jnp.mean(jnp.std(l2_normalize(z), axis=0))


def _cosine(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """Row-wise cosine similarity [N] in float32, the target behind a stop-gradient."""
  if prediction.ndim != 2 or prediction.shape != target.shape:
    raise ValueError(f"prediction and target must both be [N, D], got {prediction.shape} and {target.shape}")
  return jnp.sum(l2_normalize(prediction) * jax.lax.stop_gradient(l2_normalize(target)), axis=-1)


def byol_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """BYOL's regression loss (Grill et al. 2020, eq. 2): mean over the batch of
  ||p / |p| - z / |z| ||^2 = 2 - 2 cos(p, z), one direction; no gradient reaches `target` (the teacher's
  projection). Equals solo-learn's `byol_loss_func(p, z)` and DeepMind's `regression_loss`, meaned.

  Args: prediction [N, D] (online predictor output), target [N, D]. Returns a float32 scalar."""
  return jnp.mean(2.0 - 2.0 * _cosine(prediction, target))


def simsiam_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """SimSiam's D(p, z) = -cos(p, stopgrad(z)), mean over the batch (Chen & He 2021, Algorithm 1); the symmetric
  loss is (D(p1, z2) + D(p2, z1)) / 2. Args: prediction, target [N, D]. Returns a float32 scalar."""
  return -jnp.mean(_cosine(prediction, target))


def moco_v3_loss(query: jax.Array, key: jax.Array, temperature: float, *, axis_name=None) -> jax.Array:
  """MoCo v3's contrastive loss (Chen, Xie & He 2021, Algorithm 1): InfoNCE of each query against the keys of the
  global batch (its own key the positive), times 2 tau as in facebookresearch/moco-v3's `contrastive_loss`
  (`CrossEntropyLoss()(logits, labels) * (2 * T)`): the factor makes the gradient's scale independent of tau.
  The symmetric loss sums it over (q1, k2) and (q2, k1). No gradient reaches `key`.

  Args: query, key [N, D]; temperature tau. Returns a float32 scalar."""
  key = jax.lax.stop_gradient(key)
  return 2.0 * temperature * info_nce(query, key, temperature=temperature, axis_name=axis_name)


def dino_loss(
  student_logits: jax.Array,
  teacher_logits: jax.Array,
  center: jax.Array,
  student_temperature: float,
  teacher_temperature: float | jax.Array,
  num_global_crops: int = 2,
) -> jax.Array:
  """DINO's cross-entropy between sharpened, centred teacher and student distributions (Caron et al. 2021,
  facebookresearch/dino `DINOLoss.forward`).

  Every student crop v is compared with every teacher crop i except its own view (v != i); each pair's
  cross-entropy -sum_k P_t,i(k) log P_s,v(k) is averaged over the batch, then over the pairs.

  Args:
    student_logits: [C * N, K], crop-major (all images' first crop, then all images' second crop, ...); the first
      `num_global_crops` crops are the global ones the teacher also sees.
    teacher_logits: [num_global_crops * N, K], crop-major; behind a stop-gradient.
    center: [1, K] or [K], subtracted from the teacher logits before the softmax (`update_center`).
    student_temperature, teacher_temperature: softmax temperatures (the teacher's sharpens: 0.04 - 0.07).

  Returns:
    Scalar float32.
  """
  num_images = teacher_logits.shape[0] // num_global_crops
  if teacher_logits.shape[0] != num_global_crops * num_images or student_logits.shape[0] % num_images:
    raise ValueError(f"dino_loss: {student_logits.shape} / {teacher_logits.shape} are not crop-major [C * N, K]")
  num_crops = student_logits.shape[0] // num_images
  student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temperature, axis=-1)
  teacher = jax.lax.stop_gradient(teacher_softmax(teacher_logits, center, teacher_temperature))
  student = student.reshape(num_crops, num_images, -1)
  teacher = teacher.reshape(num_global_crops, num_images, -1)
  pair_loss = -jnp.einsum("ink,vnk->iv", teacher, student) / num_images  # [teacher crop, student crop]
  own_view = jnp.arange(num_global_crops)[:, None] == jnp.arange(num_crops)[None, :]
  return jnp.sum(jnp.where(own_view, 0.0, pair_loss)) / (num_global_crops * num_crops - num_global_crops)


def teacher_softmax(teacher_logits, center, teacher_temperature):
  """DINO's teacher distribution softmax((logits - center) / tau_t), float32."""
  return jax.nn.softmax((teacher_logits.astype(jnp.float32) - center) / teacher_temperature, axis=-1)


def update_center(center: jax.Array, teacher_logits: jax.Array, momentum: float) -> jax.Array:
  """DINO's centre: center * m + (1 - m) * the mean of the teacher logits over the global batch (all global
  crops of all images; under jit with a batch-sharded input the mean spans every device, as the reference's
  all_reduce). Returns the new centre, shaped like `center`."""
  batch_center = jnp.mean(teacher_logits.astype(jnp.float32), axis=0).reshape(center.shape)
  return center * momentum + batch_center * (1.0 - momentum)


def batch_standardize(z: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Each column of z [N, D] minus its batch mean, over sqrt(biased batch variance + eps), in float32: torch's
  BatchNorm1d(affine=False) in training mode (global statistics under jit, as SyncBatchNorm)."""
  z = z.astype(jnp.float32)
  centred = z - jnp.mean(z, axis=0)
  return centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=0) + eps)


def _off_diagonal_squares(matrix: jax.Array) -> jax.Array:
  return jnp.sum(matrix * matrix) - jnp.sum(jnp.diagonal(matrix) ** 2)


def barlow_twins_loss(z_a: jax.Array, z_b: jax.Array, lambda_: float = 0.0051) -> jax.Array:
  """Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, eq. 1; facebookresearch/barlowtwins
  `BarlowTwins.forward`): C = BN(z_a)^T BN(z_b) / N, the cross-correlation of the two views' batch-standardised
  projections (`batch_standardize`), and sum_i (1 - C_ii)^2 + lambda_ sum_{i != j} C_ij^2.

  Args: z_a, z_b [N, D] projections of the two views (row i of each from image i). Returns a float32 scalar; under
  jit with batch-sharded inputs the statistics and C span the global batch (the reference's all_reduce)."""
  if z_a.ndim != 2 or z_a.shape != z_b.shape:
    raise ValueError(f"barlow_twins_loss: z_a and z_b must both be [N, D], got {z_a.shape} and {z_b.shape}")
  correlation = batch_standardize(z_a).T @ batch_standardize(z_b) / z_a.shape[0]
  on_diagonal = jnp.sum((jnp.diagonal(correlation) - 1.0) ** 2)
  return on_diagonal + lambda_ * _off_diagonal_squares(correlation)


def vicreg_terms(z_a: jax.Array, z_b: jax.Array) -> dict:
  """VICReg's three terms (Bardes et al. 2022; facebookresearch/vicreg `VICReg.forward`) for z_a, z_b [N, D]:
  "invariance", the mean squared error between the views; "variance", the hinge mean(relu(1 - sqrt(var + 1e-4)))
  over dimensions with the unbiased variance, averaged over the two views; "covariance", the off-diagonal squares
  of each view's covariance (divided by N - 1) summed and divided by D, summed over the two views."""
  if z_a.ndim != 2 or z_a.shape != z_b.shape:
    raise ValueError(f"vicreg_loss: z_a and z_b must both be [N, D], got {z_a.shape} and {z_b.shape}")
  n, d = z_a.shape
  z_a, z_b = z_a.astype(jnp.float32), z_b.astype(jnp.float32)

  def variance_and_covariance(z):
    centred = z - jnp.mean(z, axis=0)
    std = jnp.sqrt(jnp.sum(centred * centred, axis=0) / (n - 1) + 1e-4)
    covariance = centred.T @ centred / (n - 1)
    return jnp.mean(jax.nn.relu(1.0 - std)), _off_diagonal_squares(covariance) / d

  variance_a, covariance_a = variance_and_covariance(z_a)
  variance_b, covariance_b = variance_and_covariance(z_b)
  return {
    "invariance": jnp.mean((z_a - z_b) ** 2),
    "variance": (variance_a + variance_b) / 2.0,
    "covariance": covariance_a + covariance_b,
  }


def vicreg_loss(
  z_a: jax.Array, z_b: jax.Array, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0
) -> jax.Array:
  """VICReg's loss sim_coeff x invariance + std_coeff x variance + cov_coeff x covariance (`vicreg_terms`), a
  float32 scalar over the global batch under jit (the reference gathers every device's embeddings for the last
  two; its invariance term is per device, which averages to the same value)."""
  terms = vicreg_terms(z_a, z_b)
  return sim_coeff * terms["invariance"] + std_coeff * terms["variance"] + cov_coeff * terms["covariance"]


def sinkhorn(scores: jax.Array, num_iters: int = 3, epsilon: float = 0.05, valid: jax.Array | None = None):
  """SwAV's Sinkhorn-Knopp codes (Caron et al. 2020, facebookresearch/swav `distributed_sinkhorn`): Q = exp(scores
  / epsilon) normalised to sum 1, then `num_iters` times each prototype's row to 1/K and each sample's column to
  1/B; returned times B, so each sample's codes sum to 1 and each prototype receives about B/K.

  Args:
    scores: [B, K] similarities of samples to prototypes (taken without gradient).
    valid: optional [B] bool; rows marked False (unused queue slots) take no part and get zero codes.

  Returns:
    [B, K] float32 codes. Under jit with batch-sharded scores every sum spans the global batch (the reference's
    all_reduce). exp is taken after subtracting the global maximum, which the first normalisation cancels.
  """
  scores = jax.lax.stop_gradient(scores.astype(jnp.float32)) / epsilon
  valid = jnp.ones(scores.shape[0], bool) if valid is None else valid
  scores = jnp.where(valid[:, None], scores, -jnp.inf)
  q = jnp.exp(scores - jnp.max(scores))
  q = q / jnp.sum(q)
  num_samples, num_prototypes = jnp.sum(valid), scores.shape[1]
  for _ in range(num_iters):
    q = q / jnp.sum(q, axis=0, keepdims=True) / num_prototypes
    q = q / jnp.maximum(jnp.sum(q, axis=1, keepdims=True), jnp.finfo(jnp.float32).tiny) / num_samples
  return q * num_samples


def swav_loss(
  scores: jax.Array,
  num_crops: int,
  crops_for_assign=(0, 1),
  temperature: float = 0.1,
  epsilon: float = 0.05,
  sinkhorn_iters: int = 3,
  queue_scores: jax.Array | None = None,
  use_queue: bool | jax.Array = False,
) -> jax.Array:
  """SwAV's swapped prediction (Caron et al. 2020, facebookresearch/swav `main_swav.py`): for every crop a in
  `crops_for_assign`, the Sinkhorn codes of its scores (with the queue's scores before them when `use_queue`) are
  predicted from every other crop v by cross-entropy with softmax(scores_v / temperature); averaged over the other
  crops, then over the assignment crops. No gradient reaches the codes.

  Args:
    scores: [C * N, K] crop-major scores of the l2-normalised embeddings against the l2-normalised prototypes.
    num_crops: C, every crop (global and local) of each image.
    queue_scores: optional [len(crops_for_assign), L, K] scores of the queued embeddings of each assignment crop.
    use_queue: a bool scalar; False leaves the queue out (the reference before the queue is full).

  Returns:
    A float32 scalar.
  """
  num_images = scores.shape[0] // num_crops
  if scores.ndim != 2 or scores.shape[0] != num_crops * num_images:
    raise ValueError(f"swav_loss: scores {scores.shape} are not crop-major [{num_crops} * N, K]")
  crops = scores.astype(jnp.float32).reshape(num_crops, num_images, -1)
  log_predictions = jax.nn.log_softmax(crops / temperature, axis=-1)
  total = 0.0
  for index, crop in enumerate(crops_for_assign):
    assigned, valid = crops[crop], None
    if queue_scores is not None:
      queue = queue_scores[index].astype(jnp.float32)
      valid = jnp.concatenate([jnp.full(queue.shape[0], use_queue), jnp.ones(num_images, bool)])
      assigned = jnp.concatenate([queue, assigned])
    codes = sinkhorn(assigned, sinkhorn_iters, epsilon, valid)[-num_images:]
    cross_entropy = -jnp.einsum("nk,vnk->v", codes, log_predictions) / num_images
    total += (jnp.sum(cross_entropy) - cross_entropy[crop]) / (num_crops - 1)
  return total / len(crops_for_assign)


SPLIT_EPSILON = 1.0 / 1024  # faiss' relative perturbation when it splits a cluster for an empty one.


def kmeans(
  features: jax.Array,
  centroids: jax.Array,
  num_iters: int,
  spherical: bool = False,
  weights: jax.Array | None = None,
  split_empty: bool = False,
):
  """Lloyd's k-means from the given initial centroids, jit-able: `num_iters` times, assign every feature to its
  nearest centroid, then move each centroid to the mean of its features. Equals scikit-learn's
  `KMeans(init=centroids, n_init=1, max_iter=num_iters, tol=0, algorithm="lloyd")` while no cluster empties; an
  empty cluster keeps its centroid (scikit-learn moves it to a far point; DeepCluster re-seeds it itself).
  `spherical`: assignment by the largest dot product and l2-normalised centroids (DeepCluster-v2's, on
  l2-normalised features). `weights` [N] (0 or 1): rows with weight 0 take no part in the centroids (the unfilled
  rows of a memory bank); they are still assigned. `split_empty`: after each update the e-th empty cluster takes
  the centroid of the e-th largest cluster times (1 + eps s) and that one becomes (1 - eps s), s = (+1, -1, ...)
  over dimensions, eps = 1/1024 (faiss' re-seeding, which DeepCluster relies on): the next assignment splits it.

  Args:
    features: [N, D]; under jit it may be sharded over rows (a memory bank over the mesh): the assignments stay
      on their rows' devices and the centroid sums are reduced over the mesh by the compiler.
    centroids: [k, D] initial centroids.

  Returns:
    (centroids [k, D] float32, assignments [N] int32 of the features to the returned centroids).
  """
  features = features.astype(jnp.float32)
  num_clusters = centroids.shape[0]
  weights = jnp.ones(features.shape[0], jnp.float32) if weights is None else weights.astype(jnp.float32)

  def assign(centroids):
    similarity = features @ centroids.T
    if not spherical:  # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2).
      similarity = similarity - 0.5 * jnp.sum(centroids * centroids, axis=-1)
    return jnp.argmax(similarity, axis=-1).astype(jnp.int32)

  def update(centroids, _):
    assignments = assign(centroids)
    sums = jax.ops.segment_sum(features * weights[:, None], assignments, num_clusters)
    counts = jax.ops.segment_sum(weights, assignments, num_clusters)
    new = sums / jnp.maximum(counts, 1.0)[:, None]
    if spherical:
      new = l2_normalize(new)
    new = jnp.where(counts[:, None] > 0, new, centroids)
    return (split_empty_clusters(new, counts) if split_empty else new), None

  centroids, _ = jax.lax.scan(update, centroids.astype(jnp.float32), None, length=num_iters)
  return centroids, assign(centroids)


def split_empty_clusters(centroids: jax.Array, counts: jax.Array) -> jax.Array:
  """`kmeans`' `split_empty`: [k, D] centroids with every empty one (count 0) seeded by splitting a large one."""
  num_clusters = centroids.shape[0]
  empty = counts == 0
  donors = jnp.argsort(-counts)[jnp.clip(jnp.cumsum(empty) - 1, 0, num_clusters - 1)]  # e-th empty: e-th largest.
  split = empty & (counts[donors] > 1)
  signs = jnp.where(jnp.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0) * SPLIT_EPSILON
  is_donor = jnp.zeros(num_clusters, bool).at[jnp.where(split, donors, num_clusters)].set(True, mode="drop")
  new = jnp.where(split[:, None], centroids[donors] * (1.0 + signs), centroids)
  return jnp.where(is_donor[:, None], centroids * (1.0 - signs), new)


def pca_whiten(features: jax.Array, dim: int, eps: float = 1e-8) -> jax.Array:
  """DeepCluster's feature preprocessing before k-means (`clustering.preprocess_features`: faiss' PCAMatrix with
  eigen_power -0.5, then l2 normalisation): [N, D] centred, projected on the `dim` leading principal axes, each
  divided by the square root of its variance (floored at eps x the largest), rows l2-normalised. Float32."""
  features = features.astype(jnp.float32)
  centred = features - jnp.mean(features, axis=0)
  covariance = centred.T @ centred / features.shape[0]
  variances, axes = jnp.linalg.eigh(covariance)  # Ascending.
  variances, axes = variances[::-1][:dim], axes[:, ::-1][:, :dim]
  whitened = centred @ axes * jax.lax.rsqrt(jnp.maximum(variances, eps * variances[0]))
  return l2_normalize(whitened)


def pseudo_label_loss(scores, targets: jax.Array, num_crops: int = 1, temperature: float = 1.0) -> jax.Array:
  """Cross-entropy of softmax(scores / temperature) against cluster assignments, averaged over the rows whose
  target is >= 0 (torch's CrossEntropyLoss(ignore_index) mean; -1 marks examples not yet clustered).
  DeepCluster's classifier on pseudo-labels (temperature 1) and DeepCluster-v2's prototypes (0.1).

  Args:
    scores: [C * N, K] crop-major scores of every crop of N images.
    targets: [N] cluster of each image, shared by all its crops (tiled crop-major, as the reference's
      `.repeat(num_crops)`).
  """
  labels = jnp.tile(targets, num_crops)
  valid = labels >= 0
  logits = scores.astype(jnp.float32) / temperature
  per_row = -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
  return jnp.sum(jnp.where(valid, per_row, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def _scaled_lse(anchors, candidates, scale, block_size: int | None):
  """log sum_j exp(scale * anchors[i] . candidates[j]), [M]: the scale multiplies the anchors (so it takes
  gradients, a learnable temperature) and the log-sum-exp runs dense or blockwise as `contrastive_lse`."""
  no_self = jnp.full(anchors.shape[0], -1)
  return contrastive_lse(scale * anchors, candidates, no_self, 1.0, block_size)


def clip_loss(
  image_emb: jax.Array,
  text_emb: jax.Array,
  logit_scale: jax.Array | float,
  *,
  block_size: int | None = None,
  axis_name=None,
) -> jax.Array:
  """CLIP's symmetric contrastive loss (Radford et al. 2021, Figure 3; open_clip's `ClipLoss`): logits
  s * I T^T over the global batch, the mean of the image->text and text->image cross-entropies with the matching
  pair as the target.

  Args:
    image_emb, text_emb: [N, D] l2-normalised embeddings (as the towers return them), row i a pair.
    logit_scale: the scale s as a multiplier (CLIP's exp of its learnable log-scale), a scalar; gradients reach it.
    block_size, axis_name: as for `nt_xent`: the log-sum-exps run over blocks of `block_size` columns (the N x N
      logits never exist), and inside `jax.shard_map` each device keeps its rows as anchors and gathers the other
      tower's embeddings of the global batch (open_clip's `gather_with_grad=True, local_loss=True`).

  Returns:
    Scalar float32 loss.
  """
  if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
    raise ValueError(
      f"clip_loss: image_emb and text_emb must both be [N, D], got {image_emb.shape} and {text_emb.shape}"
    )
  image_emb, text_emb = image_emb.astype(jnp.float32), text_emb.astype(jnp.float32)
  scale = jnp.asarray(logit_scale, jnp.float32)
  positive = scale * jnp.sum(image_emb * text_emb, axis=-1)
  image_to_text = _scaled_lse(image_emb, _gather(text_emb, axis_name), scale, block_size)
  text_to_image = _scaled_lse(text_emb, _gather(image_emb, axis_name), scale, block_size)
  return _global_mean((image_to_text + text_to_image) / 2 - positive, axis_name)


def _sigmoid_pair_sum(image_emb, text_emb, t, b, positive_diagonal, block_size: int | None):
  """sum_ij -log sigmoid(z_ij (t I_i . T_j + b)) with z = +1 on the diagonal when `positive_diagonal` (a bool
  scalar), else -1 everywhere. Blockwise over text blocks of `block_size` rows with each block's logits
  recomputed in the backward pass (memory O(N x block_size))."""

  def block_sum(text_block, first_row):
    logits = t * image_emb @ text_block.T + b
    rows = jnp.arange(image_emb.shape[0])[:, None]
    columns = first_row + jnp.arange(text_block.shape[0])[None, :]
    signs = jnp.where(positive_diagonal & (rows == columns), 1.0, -1.0)
    valid = columns < text_emb.shape[0]  # Padding rows of the last block.
    return jnp.sum(jnp.where(valid, -jax.nn.log_sigmoid(signs * logits), 0.0))

  if block_size is None:
    return block_sum(text_emb, 0)
  blocks = _blocks(text_emb, block_size)

  def visit(total, j):
    return total + jax.checkpoint(block_sum)(blocks[j], j * block_size), None

  total, _ = jax.lax.scan(visit, _zeros(t, image_emb, blocks), jnp.arange(len(blocks)))
  return total


def siglip_loss(
  image_emb: jax.Array,
  text_emb: jax.Array,
  t: jax.Array | float,
  b: jax.Array | float,
  *,
  block_size: int | None = None,
  axis_name=None,
) -> jax.Array:
  """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Algorithm 1; big_vision's `two_towers` sigmoid loss):
  every one of the N^2 image-text pairs of the global batch is a binary classification with logit t I_i . T_j + b,
  positive only for i = j; -log sigmoid summed over all pairs and divided by N.

  Args:
    image_emb, text_emb: [N, D] l2-normalised embeddings, row i a pair.
    t, b: the temperature as a multiplier (SigLIP's exp(t')) and the bias, scalars; gradients reach both.
    block_size: the pair sum runs over text blocks of `block_size` rows, each recomputed in the backward pass,
      so no device holds more than [N_local, block_size] logits.
    axis_name: inside `jax.shard_map`, the mesh axis (or axes) the batch is split over. Nothing is gathered:
      each device's text block travels round the ring of devices (`ppermute`, big_vision's chunked sigmoid loss),
      so a device meets every text of the global batch one block at a time, the positives on the first visit.

  Returns:
    Scalar float32 loss, the global one on every device.
  """
  if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
    raise ValueError(
      f"siglip_loss: image_emb and text_emb must both be [N, D], got {image_emb.shape} and {text_emb.shape}"
    )
  image_emb, text_emb = image_emb.astype(jnp.float32), text_emb.astype(jnp.float32)
  t, b = jnp.asarray(t, jnp.float32), jnp.asarray(b, jnp.float32)
  total = _sigmoid_pair_sum(image_emb, text_emb, t, b, True, block_size)
  if axis_name is None:
    return total / image_emb.shape[0]
  num_devices = jax.lax.axis_size(axis_name)
  ring = [(i, (i + 1) % num_devices) for i in range(num_devices)]
  for _ in range(num_devices - 1):  # The other devices' texts: negatives only.
    text_emb = jax.lax.ppermute(text_emb, axis_name, ring)
    total = total + _sigmoid_pair_sum(image_emb, text_emb, t, b, False, block_size)
  return jax.lax.psum(total, axis_name) / (image_emb.shape[0] * num_devices)


def token_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Language modelling's loss: sum_i w_i (-log softmax(logits_i)[targets_i]) / sum_i w_i over every position of
  the global batch, in nats per predicted token. logits [..., V], targets and weights [...]. GPT (weights: every
  next token, PAD excluded) and BERT (weights: the selected positions only) as in their references; 0 when no
  position counts."""
  weights = weights.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def skipgram_negative_sampling_loss(positive_logits, negative_logits, pair_weights, negative_weights) -> jax.Array:
  """word2vec's skip-gram objective with negative sampling (Mikolov et al. 2013, eq. 4), negated and averaged over
  the pairs of the global batch: -log sigmoid(u_o . v_c) - sum_k log sigmoid(-u_k . v_c).

  positive_logits [...] (u_o . v_c per pair), negative_logits [..., K] (u_k . v_c per noise word), pair_weights
  [...] (1 for a real pair), negative_weights [..., K] (0 where word2vec.c skips a noise word: it equals the
  context word)."""
  pair_weights = pair_weights.astype(jnp.float32)
  negatives = jnp.sum(jax.nn.log_sigmoid(-negative_logits.astype(jnp.float32)) * negative_weights, axis=-1)
  per_pair = -(jax.nn.log_sigmoid(positive_logits.astype(jnp.float32)) + negatives)
  return jnp.sum(per_pair * pair_weights) / jnp.maximum(jnp.sum(pair_weights), 1.0)


GAN_OBJECTIVES = ("non_saturating", "hinge", "least_squares")


def gan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, objective: str) -> jax.Array:
  """The discriminator's loss on its raw outputs for real [N] and generated [M] images, each averaged over its batch:
  - "non_saturating" (Goodfellow et al. 2014, DCGAN): BCE(D(x), 1) + BCE(D(G(z)), 0) on logits, as the PyTorch
    DCGAN example's errD_real + errD_fake: mean softplus(-r) + mean softplus(f);
  - "hinge" (Lim & Ye 2017; SN-GAN, BigGAN): mean relu(1 - r) + mean relu(1 + f);
  - "least_squares" (LSGAN, Mao et al. 2017, with CycleGAN's scaling): (mean (r - 1)^2 + mean f^2) / 2."""
  real, fake = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)
  if objective == "non_saturating":
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
  if objective == "hinge":
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
  if objective == "least_squares":
    return (jnp.mean(jnp.square(real - 1.0)) + jnp.mean(jnp.square(fake))) / 2.0
  raise ValueError(f"gan objective: unknown {objective!r} ({', '.join(GAN_OBJECTIVES)})")


def gan_generator_loss(fake_logits: jax.Array, objective: str) -> jax.Array:
  """The generator's loss on the discriminator's raw outputs for its images [M]: "non_saturating" maximises
  log D(G(z)) (BCE(D(G(z)), 1) = mean softplus(-f), the DCGAN example's errG), "hinge" mean -f, "least_squares"
  mean (f - 1)^2 (CycleGAN's)."""
  fake = fake_logits.astype(jnp.float32)
  if objective == "non_saturating":
    return jnp.mean(jax.nn.softplus(-fake))
  if objective == "hinge":
    return -jnp.mean(fake)
  if objective == "least_squares":
    return jnp.mean(jnp.square(fake - 1.0))
  raise ValueError(f"gan objective: unknown {objective!r} ({', '.join(GAN_OBJECTIVES)})")
