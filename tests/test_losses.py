"""NT-Xent and InfoNCE against the formulas, the SimCLR reference's structure, and an 8-device mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ssljax.losses import info_nce, nt_xent

LARGE_NUM = 1e9


def simclr_reference_loss(hidden1, hidden2, temperature):
  """google-research/simclr `add_contrastive_loss` (hidden_norm=True, one replica), rewritten in jax.numpy:
  masked logits_aa / logits_bb with -LARGE_NUM on the diagonal, [ab, aa] and [ba, bb] blocks, one-hot softmax
  cross-entropy means, and loss_a + loss_b."""
  hidden1 = hidden1 / jnp.linalg.norm(hidden1, axis=-1, keepdims=True)
  hidden2 = hidden2 / jnp.linalg.norm(hidden2, axis=-1, keepdims=True)
  n = hidden1.shape[0]
  labels = jax.nn.one_hot(jnp.arange(n), 2 * n)
  masks = jax.nn.one_hot(jnp.arange(n), n)
  logits_aa = hidden1 @ hidden1.T / temperature - masks * LARGE_NUM
  logits_bb = hidden2 @ hidden2.T / temperature - masks * LARGE_NUM
  logits_ab = hidden1 @ hidden2.T / temperature
  logits_ba = hidden2 @ hidden1.T / temperature

  def softmax_ce(logits):
    return jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))

  return softmax_ce(jnp.concatenate([logits_ab, logits_aa], 1)) + softmax_ce(jnp.concatenate([logits_ba, logits_bb], 1))


def _pair(n=16, d=8, seed=0, dtype=jnp.float32):
  ka, kb = jax.random.split(jax.random.key(seed))
  return jax.random.normal(ka, (n, d), dtype), jax.random.normal(kb, (n, d), dtype)


@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
def test_nt_xent_equals_simclr_reference_value_and_grad(temperature):
  z_a, z_b = _pair()
  ours = jax.jit(jax.value_and_grad(nt_xent, argnums=(0, 1)), static_argnums=2)
  value, grads = ours(z_a, z_b, temperature)
  ref_value, ref_grads = jax.value_and_grad(simclr_reference_loss, argnums=(0, 1))(z_a, z_b, temperature)
  # The reference sums its two per-view means; Algorithm 1 averages over the 2N anchors: exactly half.
  np.testing.assert_allclose(2 * value, ref_value, rtol=1e-5)
  for g, ref_g in zip(grads, ref_grads, strict=True):
    assert np.linalg.norm(2 * g - ref_g) <= 1e-5 * np.linalg.norm(ref_g)
    np.testing.assert_allclose(2 * g, ref_g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("block_size", [None, 8])
def test_simclr_method_loss_is_the_reference_loss_value_and_grad(mesh8, block_size):
  """The SimCLR method trains on google-research/simclr's loss itself (the sum of the two views' means), not on
  half of it: under LARS the factor changes the update of BatchNorm and biases and the weight of weight decay.
  Blockwise, it runs inside shard_map over the 8-device mesh."""
  from ssljax.methods import simclr

  z_a, z_b = _pair()

  def method_loss(z_a, z_b):
    outputs = {"projections": jnp.concatenate([z_a, z_b])}
    return simclr.contrastive_loss(outputs, None, 0, 0.2, block_size=block_size, mesh=mesh8)[0]

  value, grads = jax.jit(jax.value_and_grad(method_loss, argnums=(0, 1)))(z_a, z_b)
  ref_value, ref_grads = jax.value_and_grad(simclr_reference_loss, argnums=(0, 1))(z_a, z_b, 0.2)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for g, ref_g in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-6)


def test_nt_xent_golden_value_two_orthogonal_pairs():
  # Views of image 0 are e1 (twice), of image 1 are e2 (twice). Every anchor has cosine 1 with its positive and
  # 0 with both negatives: loss = -log(e^{1/t} / (e^{1/t} + 2)).
  e1, e2 = jnp.array([1.0, 0.0]), jnp.array([0.0, 3.0])
  z = jnp.stack([e1, e2])
  t = 0.5
  expected = -np.log(np.exp(1 / t) / (np.exp(1 / t) + 2))
  np.testing.assert_allclose(jax.jit(nt_xent)(z, z, t), expected, rtol=1e-6)


def test_nt_xent_invariances():
  z_a, z_b = _pair()
  base = nt_xent(z_a, z_b)
  # Cosine similarity: positive rescaling of any row changes nothing.
  scales = jnp.linspace(0.1, 10.0, z_a.shape[0])[:, None]
  np.testing.assert_allclose(nt_xent(z_a * scales, z_b), base, rtol=1e-5)
  # Swapping the views or permuting the images changes nothing.
  np.testing.assert_allclose(nt_xent(z_b, z_a), base, rtol=1e-6)
  perm = np.random.default_rng(0).permutation(z_a.shape[0])
  np.testing.assert_allclose(nt_xent(z_a[perm], z_b[perm]), base, rtol=1e-6)
  # A common rotation of the embedding space changes nothing.
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
  np.testing.assert_allclose(nt_xent(z_a @ q, z_b @ q), base, rtol=1e-5)


def test_nt_xent_bf16_inputs_are_computed_in_fp32():
  z_a, z_b = _pair(n=64, d=32)
  value = jax.jit(nt_xent)(z_a.astype(jnp.bfloat16), z_b.astype(jnp.bfloat16), 0.05)
  assert value.dtype == jnp.float32 and np.isfinite(value)
  exact = nt_xent(z_a.astype(jnp.bfloat16).astype(jnp.float32), z_b.astype(jnp.bfloat16).astype(jnp.float32), 0.05)
  np.testing.assert_allclose(value, exact, rtol=1e-6)


def test_info_nce_in_batch_matches_formula():
  q, k = _pair(n=8, d=4, seed=3)
  t = 0.2
  qn = np.asarray(q) / np.linalg.norm(q, axis=1, keepdims=True)
  kn = np.asarray(k) / np.linalg.norm(k, axis=1, keepdims=True)
  logits = qn @ kn.T / t
  expected = np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
  np.testing.assert_allclose(jax.jit(info_nce, static_argnums=3)(q, k, None, t), expected, rtol=1e-5)


def test_info_nce_with_queue_matches_formula():
  q, k = _pair(n=8, d=4, seed=4)
  queue = jax.random.normal(jax.random.key(5), (32, 4))
  t = 0.07
  unit = lambda x: np.asarray(x) / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  pos = np.sum(unit(q) * unit(k), 1) / t
  neg = unit(q) @ unit(queue).T / t
  expected = np.mean(np.log(np.exp(pos) + np.exp(neg).sum(1)) - pos)
  np.testing.assert_allclose(jax.jit(info_nce)(q, k, queue, t), expected, rtol=1e-5)


def test_bad_shapes_raise_one_line_errors():
  with pytest.raises(ValueError, match=r"z_a and z_b must both be \[N, D\]"):
    nt_xent(jnp.zeros((4, 3)), jnp.zeros((5, 3)))
  with pytest.raises(ValueError, match=r"negatives must be \[K, 3\]"):
    info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.ones((7, 2)))


@pytest.mark.parametrize("loss_name", ["nt_xent", "info_nce", "info_nce_queue"])
def test_sharded_global_batch_equals_single_device(mesh8, loss_name):
  """Batch sharded over 8 devices: negatives must come from the global batch, and gradients must match."""
  z_a, z_b = _pair(n=32, d=16, seed=7)
  queue = jax.random.normal(jax.random.key(8), (24, 16))
  losses = {
    "nt_xent": lambda a, b: nt_xent(a, b, 0.1),
    "info_nce": lambda a, b: info_nce(a, b, None, 0.1),
    "info_nce_queue": lambda a, b: info_nce(a, b, queue, 0.1),
  }

  def fn(a, b):
    return jax.value_and_grad(losses[loss_name], argnums=(0, 1))(a, b)

  single_value, single_grads = jax.jit(fn)(z_a, z_b)
  shard = NamedSharding(mesh8, PartitionSpec("data"))
  sharded = jax.jit(fn, in_shardings=(shard, shard))
  value, grads = sharded(jax.device_put(z_a, shard), jax.device_put(z_b, shard))
  assert grads[0].sharding.spec == PartitionSpec("data")
  np.testing.assert_allclose(value, single_value, rtol=1e-6)
  for g, single_g in zip(grads, single_grads, strict=True):
    np.testing.assert_allclose(g, single_g, rtol=1e-5, atol=1e-8)
  if loss_name == "info_nce_queue":
    return  # Queue negatives are shared, not in-batch: per-device and global losses coincide by design.
  # A per-device loss (each device's own negatives only) would differ: the global batch really is used.
  local = np.mean([losses[loss_name](z_a[i : i + 4], z_b[i : i + 4]) for i in range(0, 32, 4)])
  assert abs(local - float(value)) > 1e-2
