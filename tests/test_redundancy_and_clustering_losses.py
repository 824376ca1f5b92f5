"""Barlow Twins, VICReg, SwAV (Sinkhorn codes and swapped prediction) and k-means against the reference
implementations' structure, re-derived in NumPy / float64 from the papers and the reference code: values, gradients
(central differences of the float64 reference), Sinkhorn's marginals, scikit-learn's KMeans, and an 8-device mesh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from sklearn.cluster import KMeans

from ssljax import losses


def _normal(shape, seed, scale=1.0):
  return scale * np.random.default_rng(seed).standard_normal(shape)


def barlow_twins_reference(z_a, z_b, lambda_):
  """facebookresearch/barlowtwins: c = bn(z1).T @ bn(z2) / N with BatchNorm1d(affine=False) (biased variance,
  eps 1e-5); on_diag = sum((diag(c) - 1)^2), off_diag = sum of the off-diagonal squares."""
  bn = lambda z: (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)  # noqa: E731
  c = bn(z_a).T @ bn(z_b) / z_a.shape[0]
  off = c[~np.eye(c.shape[0], dtype=bool)]
  return np.sum((np.diag(c) - 1) ** 2) + lambda_ * np.sum(off**2)


def vicreg_reference(x, y, sim_coeff, std_coeff, cov_coeff):
  """facebookresearch/vicreg `VICReg.forward`: MSE; std = sqrt(var(ddof=1) + 1e-4), hinge at 1 averaged over both
  views; cov = x.T x / (N - 1), its off-diagonal squares / D, summed over both views."""
  n, d = x.shape
  repr_loss = np.mean((x - y) ** 2)
  x, y = x - x.mean(0), y - y.mean(0)
  std_x, std_y = np.sqrt(x.var(0, ddof=1) + 1e-4), np.sqrt(y.var(0, ddof=1) + 1e-4)
  std_loss = np.mean(np.maximum(0, 1 - std_x)) / 2 + np.mean(np.maximum(0, 1 - std_y)) / 2
  off = ~np.eye(d, dtype=bool)
  cov_loss = np.sum((x.T @ x / (n - 1))[off] ** 2) / d + np.sum((y.T @ y / (n - 1))[off] ** 2) / d
  return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def sinkhorn_reference(out, epsilon, iters):
  """facebookresearch/swav `distributed_sinkhorn` on one process: Q = exp(out / eps).T [K, B], ..., Q.T."""
  q = np.exp(out / epsilon).T
  k, b = q.shape
  q /= q.sum()
  for _ in range(iters):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  return (q * b).T


def swav_reference(scores, num_crops, crops_for_assign, temperature, epsilon, iters, queue=None):
  """`main_swav.py`'s loss loop, with the queue's scores (already times the prototypes) before the crop's."""
  bs = scores.shape[0] // num_crops
  loss = 0.0
  for i, crop_id in enumerate(crops_for_assign):
    out = scores[bs * crop_id : bs * (crop_id + 1)]
    if queue is not None:
      out = np.concatenate([queue[i], out])
    q = sinkhorn_reference(out, epsilon, iters)[-bs:]
    subloss = 0.0
    for v in np.delete(np.arange(num_crops), crop_id):
      x = scores[bs * v : bs * (v + 1)] / temperature
      log_softmax = x - x.max(1, keepdims=True)
      log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
      subloss -= np.mean(np.sum(q * log_softmax, axis=1))
    loss += subloss / (num_crops - 1)
  return loss / len(crops_for_assign)


def numerical_gradient(fn, x, h=1e-6):
  """Central differences of a float64 function of x."""
  grad = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    step = np.zeros_like(x)
    step[index] = h
    grad[index] = (fn(x + step) - fn(x - step)) / (2 * h)
  return grad


def _assert_gradient(actual, expected):
  """Relative to the gradient's norm: 1e-5 of it per entry (float32 against float64 central differences)."""
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("n", "d", "lambda_", "scale"), [(8, 6, 0.0051, 1.0), (16, 4, 0.1, 3.0), (5, 12, 1.0, 0.2)])
def test_barlow_twins_equals_the_reference_in_value_and_gradient(n, d, lambda_, scale):
  z_a, z_b = _normal((n, d), 1, scale) + 0.5, _normal((n, d), 2, scale)
  loss = jax.jit(functools.partial(losses.barlow_twins_loss, lambda_=lambda_))
  np.testing.assert_allclose(loss(z_a.astype(np.float32), z_b), barlow_twins_reference(z_a, z_b, lambda_), rtol=1e-5)
  grad = jax.jit(jax.grad(loss))(jnp.float32(z_a), jnp.float32(z_b))
  _assert_gradient(grad, numerical_gradient(lambda z: barlow_twins_reference(z, z_b, lambda_), z_a))


def test_barlow_twins_is_zero_for_identical_decorrelated_views_and_scale_invariant():
  """C = I when both views are the same whitened batch: the loss is 0; standardisation makes it invariant to a
  per-dimension affine change of either view."""
  z = np.linalg.qr(_normal((64, 8), 3) - 0)[0]
  z = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-12)
  whitened = np.linalg.cholesky(np.cov(z.T, bias=True))
  z = z @ np.linalg.inv(whitened).T
  assert float(losses.barlow_twins_loss(z, z)) < 1e-5 * 8
  z_a, z_b = _normal((32, 6), 4), _normal((32, 6), 5)
  affine = z_b * np.linspace(0.5, 4.0, 6) - 3.0
  np.testing.assert_allclose(losses.barlow_twins_loss(z_a, affine), losses.barlow_twins_loss(z_a, z_b), rtol=1e-4)


@pytest.mark.parametrize(
  ("n", "d", "coeffs", "scale"),
  [(8, 6, (25.0, 25.0, 1.0), 1.0), (16, 4, (1.0, 2.0, 3.0), 0.3), (6, 10, (5.0, 1.0, 0.5), 2.0)],
)
def test_vicreg_equals_the_reference_in_value_and_gradient(n, d, coeffs, scale):
  """scale 0.3 puts most standard deviations under the hinge at 1, scale 2 most above it."""
  z_a, z_b = _normal((n, d), 6, scale), _normal((n, d), 7, scale)
  loss = jax.jit(functools.partial(losses.vicreg_loss, sim_coeff=coeffs[0], std_coeff=coeffs[1], cov_coeff=coeffs[2]))
  np.testing.assert_allclose(loss(z_a.astype(np.float32), z_b), vicreg_reference(z_a, z_b, *coeffs), rtol=1e-5)
  grad_a, grad_b = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.float32(z_a), jnp.float32(z_b))
  _assert_gradient(grad_a, numerical_gradient(lambda z: vicreg_reference(z, z_b, *coeffs), z_a))
  _assert_gradient(grad_b, numerical_gradient(lambda z: vicreg_reference(z_a, z, *coeffs), z_b))


def test_vicreg_terms_by_hand():
  """Views [[0, 0], [2, 2]] and [[0, 0], [2, 4]]: invariance (0 + 0 + 0 + 4) / 4 = 1; per-dimension unbiased
  variances 2, 2 and 2, 8, so std ~1.414 / 2.828 are above the hinge: variance 0; covariances [[2, 2], [2, 2]]
  and [[2, 4], [4, 8]]: off-diagonal squares 8 / 2 + 32 / 2 = 20."""
  terms = losses.vicreg_terms(jnp.array([[0.0, 0.0], [2.0, 2.0]]), jnp.array([[0.0, 0.0], [2.0, 4.0]]))
  np.testing.assert_allclose([terms["invariance"], terms["variance"], terms["covariance"]], [1.0, 0.0, 20.0], rtol=1e-6)


@pytest.mark.parametrize(("b", "k", "epsilon", "iters"), [(16, 10, 0.05, 3), (40, 7, 0.1, 1), (9, 30, 0.03, 5)])
def test_sinkhorn_equals_the_reference_and_its_marginals_hold(b, k, epsilon, iters):
  scores = np.tanh(_normal((b, k), 8))  # Cosine-like similarities.
  codes = jax.jit(functools.partial(losses.sinkhorn, num_iters=iters, epsilon=epsilon))(jnp.float32(scores))
  np.testing.assert_allclose(codes, sinkhorn_reference(scores, epsilon, iters), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.sum(codes, axis=1), 1.0, rtol=1e-5)  # Each sample's codes: a distribution.
  # Each prototype's share converges to B / K (after the last column step the rows hold up to the iteration's
  # residual); with enough iterations both marginals hold to 1e-5.
  converged = losses.sinkhorn(jnp.float32(scores), num_iters=300, epsilon=epsilon)
  np.testing.assert_allclose(np.sum(converged, axis=0), b / k, rtol=1e-5)
  np.testing.assert_allclose(np.sum(converged, axis=1), 1.0, rtol=1e-5)


def test_sinkhorn_ignores_invalid_rows_exactly():
  scores = np.tanh(_normal((20, 6), 9))
  valid = np.arange(20) >= 8
  codes = losses.sinkhorn(jnp.float32(scores), valid=jnp.asarray(valid))
  np.testing.assert_array_equal(codes[:8], 0.0)
  np.testing.assert_allclose(codes[8:], sinkhorn_reference(scores[8:], 0.05, 3), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
  ("num_crops", "n", "k", "assign", "temperature", "queue_length"),
  [(2, 8, 10, (0, 1), 0.1, 0), (4, 6, 12, (0, 1), 0.1, 12), (5, 4, 7, (0,), 0.2, 0), (3, 10, 5, (0, 1), 0.1, 20)],
)
def test_swav_loss_equals_the_reference_in_value_and_gradient(num_crops, n, k, assign, temperature, queue_length):
  scores = np.tanh(_normal((num_crops * n, k), 10))
  queue = np.tanh(_normal((len(assign), queue_length, k), 11)) if queue_length else None
  loss = functools.partial(
    losses.swav_loss,
    num_crops=num_crops,
    crops_for_assign=assign,
    temperature=temperature,
    queue_scores=None if queue is None else jnp.float32(queue),
    use_queue=True,
  )
  reference = functools.partial(
    swav_reference, num_crops=num_crops, crops_for_assign=assign, temperature=temperature, epsilon=0.05, iters=3
  )
  np.testing.assert_allclose(jax.jit(loss)(jnp.float32(scores)), reference(scores, queue=queue), rtol=1e-5)
  # The codes take no gradient: the reference's gradient with the codes held at their values.
  codes = [sinkhorn_reference(scores[n * c : n * (c + 1)], 0.05, 3) for c in assign]
  if queue is not None:
    codes = [
      sinkhorn_reference(np.concatenate([queue[i], scores[n * c : n * (c + 1)]]), 0.05, 3)[-n:]
      for i, c in enumerate(assign)
    ]

  def with_fixed_codes(x):
    total = 0.0
    for q, c in zip(codes, assign, strict=True):
      for v in np.delete(np.arange(num_crops), c):
        logits = x[n * v : n * (v + 1)] / temperature
        log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        total -= np.mean(np.sum(q * log_softmax, axis=1)) / (num_crops - 1)
    return total / len(assign)

  _assert_gradient(jax.jit(jax.grad(loss))(jnp.float32(scores)), numerical_gradient(with_fixed_codes, scores))


def test_swav_loss_without_the_queue_ignores_it_and_pairs_crops_of_one_image():
  n, k, num_crops = 6, 8, 4
  scores = jnp.float32(np.tanh(_normal((num_crops * n, k), 12)))
  queue = jnp.float32(np.tanh(_normal((2, 12, k), 13)))
  plain = losses.swav_loss(scores, num_crops)
  np.testing.assert_allclose(losses.swav_loss(scores, num_crops, queue_scores=queue, use_queue=False), plain, rtol=1e-6)
  assert abs(float(losses.swav_loss(scores, num_crops, queue_scores=queue, use_queue=True)) - float(plain)) > 1e-4
  crops = scores.reshape(num_crops, n, k)
  image_permutation = jnp.asarray(np.random.default_rng(0).permutation(n))
  permuted = crops[:, image_permutation].reshape(-1, k)
  np.testing.assert_allclose(losses.swav_loss(permuted, num_crops), plain, rtol=1e-5)
  one_crop = crops.at[2].set(crops[2, image_permutation]).reshape(-1, k)
  assert abs(float(losses.swav_loss(one_crop, num_crops)) - float(plain)) > 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_kmeans_equals_scikit_learn_from_the_same_initial_centroids(seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(5, 3)) * 4
  x = np.concatenate([c + rng.normal(size=(40, 3)) for c in centres])
  init = x[rng.choice(len(x), 5, replace=False)]
  reference = KMeans(5, init=init, n_init=1, max_iter=4, tol=0.0, algorithm="lloyd").fit(x)
  centroids, assignments = jax.jit(functools.partial(losses.kmeans, num_iters=4))(jnp.float32(x), jnp.float32(init))
  np.testing.assert_allclose(centroids, reference.cluster_centers_, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(assignments, reference.labels_)


def test_spherical_kmeans_keeps_unit_centroids_and_an_empty_cluster():
  x = losses.l2_normalize(jnp.float32(_normal((30, 4), 14)))
  far = jnp.float32([[0.0, 0.0, 0.0, 0.0]])  # Nearest to nothing under the dot product once others exist.
  init = jnp.concatenate([x[:3], far])
  centroids, assignments = losses.kmeans(x, init, num_iters=3, spherical=True)
  np.testing.assert_allclose(np.linalg.norm(centroids[:3], axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(centroids[3], far[0])
  assert set(np.asarray(assignments).tolist()) <= {0, 1, 2}
  # A fixed point: every feature is assigned to the centroid with the largest dot product.
  np.testing.assert_array_equal(assignments, np.argmax(np.asarray(x) @ np.asarray(centroids).T, axis=1))


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg", "sinkhorn", "swav", "kmeans"])
def test_losses_and_codes_on_8_devices_equal_1_device(name, mesh8):
  """Every statistic spans the global batch under jit with batch-sharded inputs: the standardisation and
  cross-correlation, VICReg's variances and covariances, Sinkhorn's sums and k-means' centroid sums."""
  n, d = 32, 12
  a, b = jnp.float32(np.tanh(_normal((n, d), 15)) + 0.2), jnp.float32(np.tanh(_normal((n, d), 16)))
  queue = jnp.float32(np.tanh(_normal((1, 16, d), 17)))
  fns = {
    "barlow_twins": losses.barlow_twins_loss,
    "vicreg": losses.vicreg_loss,
    "sinkhorn": lambda x, y: losses.sinkhorn(x),
    "swav": lambda x, y: losses.swav_loss(jnp.concatenate([x, y]), 2, (0,), queue_scores=queue, use_queue=True),
    "kmeans": lambda x, y: losses.kmeans(x, y[:4], num_iters=3)[0],
  }
  fn = jax.jit(fns[name])
  sharded = NamedSharding(mesh8, PartitionSpec("data"))
  one = fn(a, b)
  eight = fn(jax.device_put(a, sharded), jax.device_put(b, sharded))
  np.testing.assert_allclose(eight, one, rtol=1e-5, atol=1e-7)
  if name in ("barlow_twins", "vicreg", "swav"):
    grad = jax.jit(jax.grad(fns[name], argnums=0))
    np.testing.assert_allclose(
      grad(jax.device_put(a, sharded), jax.device_put(b, sharded)), grad(a, b), rtol=1e-5, atol=1e-7
    )
