"""BYOL, SimSiam, MoCo v3 and DINO losses against the reference implementations' structure (re-derived in NumPy /
float64 from the papers and the reference code), hand-derived gradients, invariances, and an 8-device mesh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ssljax import losses

jax.config.update("jax_enable_x64", False)


def _normal(shape, seed):
  return np.asarray(jax.random.normal(jax.random.key(seed), shape), np.float64)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def byol_reference(p, z):
  """solo-learn `byol_loss_func(p, z, simplified=False)`: (2 - 2 * (normalize(p) * normalize(z)).sum(-1)).mean()."""
  return np.mean(2 - 2 * np.sum(_unit(p) * _unit(z), axis=-1))


def cosine_gradient(p, z, scale):
  """d/dp of scale * mean_i cos(p_i, z_i) for fixed z: scale / N * (z_hat - cos * p_hat) / |p| (by hand)."""
  p_hat, z_hat = _unit(p), _unit(z)
  cos = np.sum(p_hat * z_hat, axis=-1, keepdims=True)
  return scale / p.shape[0] * (z_hat - cos * p_hat) / np.linalg.norm(p, axis=-1, keepdims=True)


@pytest.mark.parametrize("shape", [(4, 3), (16, 8), (64, 256)])
def test_byol_and_simsiam_losses_equal_the_references_with_hand_derived_gradients(shape):
  p, z = _normal(shape, 0), _normal(shape, 1)
  p32, z32 = jnp.asarray(p, jnp.float32), jnp.asarray(z, jnp.float32)
  byol = jax.jit(losses.byol_loss)
  simsiam = jax.jit(losses.simsiam_loss)
  np.testing.assert_allclose(byol(p32, z32), byol_reference(p, z), rtol=1e-5)
  np.testing.assert_allclose(simsiam(p32, z32), -np.mean(np.sum(_unit(p) * _unit(z), -1)), rtol=1e-5, atol=1e-7)
  # 2 - 2 cos: d/dp = -2 d cos/dp; -cos: d/dp = -d cos/dp. No gradient reaches the target.
  grad_p, grad_z = jax.grad(losses.byol_loss, argnums=(0, 1))(p32, z32)
  np.testing.assert_allclose(grad_p, cosine_gradient(p, z, -2.0), rtol=1e-5, atol=1e-8)
  assert not np.any(np.asarray(grad_z))
  grad_p, grad_z = jax.grad(losses.simsiam_loss, argnums=(0, 1))(p32, z32)
  np.testing.assert_allclose(grad_p, cosine_gradient(p, z, -1.0), rtol=1e-5, atol=1e-8)
  assert not np.any(np.asarray(grad_z))
  # Golden: identical directions give 0 (BYOL) and -1 (SimSiam); opposite ones 4 and 1.
  np.testing.assert_allclose(losses.byol_loss(p32, 3 * p32), 0.0, atol=1e-6)
  np.testing.assert_allclose(losses.byol_loss(p32, -p32), 4.0, rtol=1e-6)
  np.testing.assert_allclose(losses.simsiam_loss(p32, -2 * p32), 1.0, rtol=1e-6)


def moco_v3_reference(q, k, temperature):
  """facebookresearch/moco-v3 `contrastive_loss` on one device: normalised q, k; logits q k^T / T; cross-entropy
  with labels arange(N); times 2T."""
  logits = _unit(q) @ _unit(k).T / temperature
  log_probs = (
    logits
    - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1, keepdims=True))
    - logits.max(1, keepdims=True)
  )
  return -np.mean(np.diag(log_probs)) * 2 * temperature


@pytest.mark.parametrize(("n", "d", "temperature"), [(8, 4, 1.0), (32, 16, 0.2), (64, 128, 0.5)])
def test_moco_v3_loss_equals_the_reference_with_its_2_tau_factor(n, d, temperature):
  q, k = _normal((n, d), 2), _normal((n, d), 3)
  q32, k32 = jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32)
  loss = jax.jit(functools.partial(losses.moco_v3_loss, temperature=temperature))
  np.testing.assert_allclose(loss(q32, k32), moco_v3_reference(q, k, temperature), rtol=1e-5)
  # Gradient by hand: d/dq_hat_i = 2 / N (sum_j p_ij k_hat_j - k_hat_i), then through the normalisation
  # (I - q_hat q_hat^T) / |q_i|. None reaches the keys.
  grad_q, grad_k = jax.grad(loss, argnums=(0, 1))(q32, k32)
  q_hat, k_hat = _unit(q), _unit(k)
  logits = q_hat @ k_hat.T / temperature
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  d_q_hat = 2.0 / n * (probs @ k_hat - k_hat)
  expected = (d_q_hat - np.sum(d_q_hat * q_hat, -1, keepdims=True) * q_hat) / np.linalg.norm(q, axis=-1, keepdims=True)
  np.testing.assert_allclose(grad_q, expected, rtol=1e-5, atol=1e-8)
  assert not np.any(np.asarray(grad_k))


def dino_reference(student, teacher, center, student_temperature, teacher_temperature, num_crops):
  """facebookresearch/dino `DINOLoss.forward`, loop for loop: student / T_s chunked into `num_crops`, teacher
  softmax((t - C) / T_t) chunked into 2; for each teacher crop iq and student crop v != iq, the batch mean of
  sum(-q * log_softmax(s_v)); the total divided by the number of terms."""

  def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.sum(np.exp(x), -1, keepdims=True))

  student_out = np.split(student / student_temperature, num_crops)
  teacher_out = np.split(np.exp(log_softmax((teacher - center) / teacher_temperature)), 2)
  total, terms = 0.0, 0
  for iq, q in enumerate(teacher_out):
    for v in range(len(student_out)):
      if v == iq:
        continue
      total += np.mean(np.sum(-q * log_softmax(student_out[v]), axis=-1))
      terms += 1
  return total / terms


@pytest.mark.parametrize(
  ("num_local", "n", "k", "student_temperature", "teacher_temperature"),
  [(0, 4, 8, 0.1, 0.04), (2, 8, 16, 0.1, 0.07), (6, 3, 32, 0.2, 0.05)],
)
def test_dino_loss_equals_the_reference_for_multi_crop(num_local, n, k, student_temperature, teacher_temperature):
  num_crops = 2 + num_local
  student, teacher, center = _normal((num_crops * n, k), 5), _normal((2 * n, k), 6), _normal((1, k), 7) * 0.3
  args = [jnp.asarray(x, jnp.float32) for x in (student, teacher, center)]
  loss = jax.jit(
    functools.partial(
      losses.dino_loss, student_temperature=student_temperature, teacher_temperature=teacher_temperature
    )
  )
  expected = dino_reference(student, teacher, center, student_temperature, teacher_temperature, num_crops)
  np.testing.assert_allclose(loss(*args), expected, rtol=1e-5)
  # Gradient by hand: for student crop v, sum over its teacher crops i != v of (softmax(s_v / T_s) - P_t,i),
  # divided by T_s, the batch size and the number of pairs. None reaches the teacher or the centre.
  grad_s, grad_t, grad_c = jax.grad(loss, argnums=(0, 1, 2))(*args)

  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  p_student = softmax(student / student_temperature).reshape(num_crops, n, k)
  p_teacher = softmax((teacher - center) / teacher_temperature).reshape(2, n, k)
  terms = 2 * num_crops - 2
  expected = np.stack([sum(p_student[v] - p_teacher[i] for i in range(2) if i != v) for v in range(num_crops)]) / (
    student_temperature * n * terms
  )
  np.testing.assert_allclose(grad_s, expected.reshape(-1, k), rtol=1e-5, atol=1e-6 * np.abs(expected).max())
  assert not np.any(np.asarray(grad_t)) and not np.any(np.asarray(grad_c))


def test_dino_loss_pairs_crops_of_the_same_image_only():
  """Permuting the images consistently in every crop leaves the loss unchanged; permuting one crop changes it; a
  student crop is never compared with its own teacher view."""
  n, k, num_crops = 6, 10, 4
  student, teacher, center = _normal((num_crops * n, k), 9), _normal((2 * n, k), 10), np.zeros((1, k))
  loss = functools.partial(
    losses.dino_loss, center=jnp.asarray(center, jnp.float32), student_temperature=0.1, teacher_temperature=0.05
  )
  base = float(loss(jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32)))
  perm = np.random.default_rng(0).permutation(n)
  by_crop = lambda x, crops: x.reshape(crops, n, k)  # noqa: E731
  student_p = by_crop(student, num_crops)[:, perm].reshape(-1, k)
  teacher_p = by_crop(teacher, 2)[:, perm].reshape(-1, k)
  np.testing.assert_allclose(
    loss(jnp.asarray(student_p, jnp.float32), jnp.asarray(teacher_p, jnp.float32)), base, rtol=1e-6
  )
  one_crop = by_crop(student, num_crops).copy()
  one_crop[2] = one_crop[2, perm]
  assert (
    abs(float(loss(jnp.asarray(one_crop.reshape(-1, k), jnp.float32), jnp.asarray(teacher, jnp.float32))) - base) > 1e-4
  )
  # With 2 crops only the cross pairs count: (CE(teacher 0, student 1) + CE(teacher 1, student 0)) / 2, by hand.
  s2, t2 = student[: 2 * n], teacher
  q = np.exp((t2 / 0.05) - (t2 / 0.05).max(-1, keepdims=True))
  q /= q.sum(-1, keepdims=True)
  log_p = s2 / 0.1 - (s2 / 0.1).max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  cross = (np.mean(-np.sum(q[:n] * log_p[n:], -1)) + np.mean(-np.sum(q[n:] * log_p[:n], -1))) / 2
  np.testing.assert_allclose(loss(jnp.asarray(s2, jnp.float32), jnp.asarray(t2, jnp.float32)), cross, rtol=1e-5)


def test_update_center_golden():
  center = jnp.array([[1.0, -2.0, 0.5]])
  teacher = jnp.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])  # Batch mean [2, 3, 4].
  np.testing.assert_allclose(losses.update_center(center, teacher, 0.9), [[1.1, -1.5, 0.85]], rtol=1e-6)


def test_embedding_std_is_one_over_sqrt_d_when_spread_and_zero_when_collapsed():
  z = jax.random.normal(jax.random.key(0), (20000, 64))
  np.testing.assert_allclose(losses.embedding_std(z), 1 / np.sqrt(64), rtol=0.02)
  np.testing.assert_allclose(losses.embedding_std(jnp.ones((128, 64)) + 1e-3), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", ["byol", "simsiam", "moco_v3", "dino", "center"])
def test_losses_and_centre_on_8_devices_equal_1_device(name, mesh8):
  """Every statistic spans the global batch under jit with batch-sharded inputs (no per-device means)."""
  n, d = 32, 16
  a, b = jnp.asarray(_normal((n, d), 11), jnp.float32), jnp.asarray(_normal((n, d), 12), jnp.float32)
  fns = {
    "byol": lambda x, y: losses.byol_loss(x, y),
    "simsiam": lambda x, y: losses.simsiam_loss(x, y),
    "moco_v3": lambda x, y: losses.moco_v3_loss(x, y, 0.2),
    "dino": lambda x, y: losses.dino_loss(jnp.concatenate([x, y]), x, jnp.zeros((1, d)), 0.1, 0.04, num_global_crops=2),
    "center": lambda x, y: losses.update_center(jnp.zeros((1, d)), jnp.concatenate([x, y]), 0.9),
  }
  fn = jax.jit(fns[name])
  sharded = NamedSharding(mesh8, PartitionSpec("data"))
  one = fn(a, b)
  eight = fn(jax.device_put(a, sharded), jax.device_put(b, sharded))
  np.testing.assert_allclose(eight, one, rtol=1e-5, atol=1e-7)
  if name != "center":
    grads_one = jax.grad(fns[name], argnums=0)(a, b)
    grads_eight = jax.jit(jax.grad(fns[name], argnums=0))(jax.device_put(a, sharded), jax.device_put(b, sharded))
    np.testing.assert_allclose(grads_eight, grads_one, rtol=1e-5, atol=1e-7)
