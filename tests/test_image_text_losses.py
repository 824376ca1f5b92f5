"""CLIP's and SigLIP's losses equal their references (open_clip's `ClipLoss`, big_vision's sigmoid loss) in value
and gradient, written here in float64 NumPy with hand-derived gradients; their blockwise and sharded forms equal
the dense ones; 65,536 pairs fit the 2-core CPU."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssljax.losses import clip_loss, l2_normalize, siglip_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pairs(n, d=16, seed=0):
  ki, kt = jax.random.split(jax.random.key(seed))
  return l2_normalize(jax.random.normal(ki, (n, d))), l2_normalize(jax.random.normal(kt, (n, d)))


def _log_softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def reference_clip(image, text, scale):
  """open_clip's ClipLoss (logits_per_image = s I T^T, logits_per_text its transpose, CE with labels arange(N),
  averaged) and its gradients with respect to (image, text, scale), derived by hand: dL/dlogits =
  (softmax_rows(logits) + softmax_columns(logits) - 2 eye) / 2N."""
  image, text = np.float64(image), np.float64(text)
  n = len(image)
  dots = image @ text.T
  logits = scale * dots
  log_rows, log_columns = _log_softmax(logits), _log_softmax(logits.T).T
  loss = -(np.trace(log_rows) + np.trace(log_columns)) / (2 * n)
  d_logits = (np.exp(log_rows) + np.exp(log_columns) - 2 * np.eye(n)) / (2 * n)
  return loss, (scale * d_logits @ text, scale * d_logits.T @ image, np.sum(d_logits * dots))


def reference_siglip(image, text, t, b):
  """big_vision's sigmoid loss (logits t I T^T + b, labels 2 eye - 1, -sum log sigmoid(labels logits) / N) and its
  gradients with respect to (image, text, t, b): dL/dlogits = -labels sigmoid(-labels logits) / N."""
  image, text = np.float64(image), np.float64(text)
  n = len(image)
  dots = image @ text.T
  labels = 2 * np.eye(n) - 1
  margins = labels * (t * dots + b)
  loss = np.sum(np.logaddexp(0, -margins)) / n
  d_logits = -labels / (1 + np.exp(margins)) / n
  return loss, (t * d_logits @ text, t * d_logits.T @ image, np.sum(d_logits * dots), np.sum(d_logits))


def _value_and_grads(loss, *args):
  return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(args)))))(*args)


def _assert_close(got, want, tolerance=1e-5):
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=tolerance, atol=tolerance), got, want)


def test_golden_values_by_hand():
  """Two orthogonal pairs: CLIP with s = 2 has logits [[2, 0], [0, 2]] in both directions, each row's CE
  log(1 + e^-2); SigLIP with t = 1, b = 0 has two positives -log sigmoid(1) and two negatives log 2, over N = 2."""
  eye = jnp.eye(2)
  np.testing.assert_allclose(clip_loss(eye, eye, 2.0), np.log1p(np.exp(-2.0)), rtol=1e-6)
  np.testing.assert_allclose(siglip_loss(eye, eye, 1.0, 0.0), np.log1p(np.exp(-1.0)) + np.log(2.0), rtol=1e-6)


@pytest.mark.parametrize("block_size", [None, 8, 7, 64])  # Dense; divides N; padded last block; one block > N.
def test_clip_loss_equals_open_clip_value_and_gradients(block_size):
  image, text = _pairs(24)
  scale = jnp.float32(1 / 0.07)
  got = _value_and_grads(functools.partial(clip_loss, block_size=block_size), image, text, scale)
  loss, grads = reference_clip(image, text, 1 / 0.07)
  _assert_close(got, (loss, grads))


@pytest.mark.parametrize("block_size", [None, 8, 7, 64])
def test_siglip_loss_equals_big_vision_value_and_gradients(block_size):
  image, text = _pairs(24)
  t, b = jnp.float32(10.0), jnp.float32(-10.0)  # SigLIP's initialisation: t' = log 10, b = -10.
  got = _value_and_grads(functools.partial(siglip_loss, block_size=block_size), image, text, t, b)
  _assert_close(got, reference_siglip(image, text, 10.0, -10.0))


def test_losses_pair_rows_and_are_invariant_to_permuting_pairs():
  """Permuting the pairs together leaves both losses unchanged; permuting one tower's rows changes them."""
  image, text = _pairs(16)
  permutation = jax.random.permutation(jax.random.key(1), 16)
  for loss in (functools.partial(clip_loss, logit_scale=10.0), functools.partial(siglip_loss, t=10.0, b=-5.0)):
    np.testing.assert_allclose(loss(image[permutation], text[permutation]), loss(image, text), rtol=1e-6)
    assert abs(float(loss(image, text[permutation])) - float(loss(image, text))) > 1e-3


@pytest.mark.parametrize("block_size", [None, 4])
def test_shard_map_over_8_devices_equals_one_device(mesh8, block_size):
  """CLIP gathers the other tower over the 8 devices, SigLIP passes each text block round the ring: the global
  loss and the gradients of the embeddings, the scale, t and b equal the single-device ones."""
  image, text = _pairs(64)
  for loss, scalars in ((clip_loss, (jnp.float32(14.0),)), (siglip_loss, (jnp.float32(10.0), jnp.float32(-10.0)))):
    local = functools.partial(loss, block_size=block_size)
    sharded = jax.shard_map(
      functools.partial(local, axis_name="data"),
      mesh=mesh8,
      in_specs=(P("data"), P("data")) + (P(),) * len(scalars),
      out_specs=P(),
    )
    _assert_close(_value_and_grads(sharded, image, text, *scalars), _value_and_grads(local, image, text, *scalars))


def test_siglip_ring_passes_text_blocks_and_never_gathers(mesh8):
  """The sharded SigLIP loss moves texts with 7 `ppermute`s per direction and no all-gather."""
  image, text = _pairs(64)
  sharded = jax.shard_map(
    functools.partial(siglip_loss, axis_name="data"),
    mesh=mesh8,
    in_specs=(P("data"), P("data"), P(), P()),
    out_specs=P(),
  )
  text_of_jaxpr = str(jax.make_jaxpr(jax.grad(sharded, argnums=(0, 1)))(image, text, 10.0, -10.0))
  assert text_of_jaxpr.count("ppermute") == 14 and "all_gather" not in text_of_jaxpr


def _compiled_temp_bytes(loss, n, d, block_size):
  z = jax.ShapeDtypeStruct((n, d), jnp.float32)
  s = jax.ShapeDtypeStruct((), jnp.float32)
  scalars = (s,) if loss is clip_loss else (s, s)
  step = jax.jit(jax.value_and_grad(functools.partial(loss, block_size=block_size), argnums=(0, 1, 2)))
  return step.lower(z, z, *scalars).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("loss", [clip_loss, siglip_loss])
def test_blockwise_memory_grows_with_n_times_block_not_n_squared(loss):
  """XLA's buffer assignment for forward + backward (compile only): 65,536 pairs of dim 128 with blocks of 1024
  need a few [N, block] tiles of 256 MiB (under 1.5 GiB) and grow linearly in N; dense needs the 16 GiB of logits."""
  blockwise = {n: _compiled_temp_bytes(loss, n, 128, 1024) for n in (8192, 65536)}
  assert blockwise[65536] < 1.5 * 2**30, blockwise
  assert blockwise[65536] < 12 * blockwise[8192]  # 8x the pairs: linear, not 64x.
  assert _compiled_temp_bytes(loss, 65536, 128, None) > 16 * 2**30


@pytest.mark.slow
def test_65536_pairs_forward_backward_peak_memory_under_3_gib():
  """Both losses on 65,536 pairs of dim 128, forward and backward, in a fresh process that prints its own peak
  resident memory (see tests/test_blockwise_losses.py for why its own)."""
  code = (
    "import jax, jax.numpy as jnp, functools, resource; from ssljax.losses import clip_loss, siglip_loss, l2_normalize;"
    "i, t = l2_normalize(jax.random.normal(jax.random.key(0), (2, 65536, 128)));"
    "c = jax.jit(jax.value_and_grad(functools.partial(clip_loss, block_size=1024), argnums=(0, 1, 2)))(i, t, 14.0);"
    "s = jax.jit(jax.value_and_grad(functools.partial(siglip_loss, block_size=1024), argnums=(0, 1, 2, 3)))"
    "(i, t, 10.0, -10.0); jax.block_until_ready((c, s));"
    "print(float(c[0]), float(s[0]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
  )
  env = {**os.environ, "XLA_FLAGS": ""}
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  clip_value, siglip_value, peak_kib = result.stdout.split()[-3:]
  # Random unit pairs in dim d have dots ~ N(0, 1/d): CLIP's loss is near log N + s^2 / 2d; SigLIP's near the
  # positive's -b plus N negatives' log(1 + e^(b + t dot)) ~ e^b E[e^(t dot)] = e^(b + t^2 / 2d).
  np.testing.assert_allclose(float(clip_value), np.log(65536) + 14.0**2 / 256, rtol=0.01)
  np.testing.assert_allclose(float(siglip_value), 10.0 + 65536 * np.exp(-10.0 + 100.0 / 256), rtol=0.02)
  assert int(peak_kib) / 2**20 < 3, peak_kib
