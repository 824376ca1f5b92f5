"""Blockwise and shard_map NT-Xent / InfoNCE equal the dense losses (value and gradient, 1e-5) and never build the
(2N)^2 similarity matrix."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssljax import losses
from ssljax.losses import info_nce, nt_xent

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _views(n, d=16, seed=0):
  ka, kb, kq = jax.random.split(jax.random.key(seed), 3)
  return jax.random.normal(ka, (n, d)), jax.random.normal(kb, (n, d)), jax.random.normal(kq, (3 * n, d))


def _value_and_grads(loss, *args):
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(*args)


def _assert_close(got, want, tolerance=1e-5):
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=tolerance, atol=tolerance), got, want)


@pytest.mark.parametrize(  # Incl. padded last blocks and a block larger than the batch.
  "n,block_size,temperature", [(16, 4, 0.1), (20, 8, 0.5), (64, 64, 0.2), (50, 128, 0.1)]
)
def test_blockwise_equals_dense_value_and_grad(n, block_size, temperature):
  z_a, z_b, queue = _views(n)
  for loss in (nt_xent, info_nce, functools.partial(info_nce, negatives=queue)):
    dense = _value_and_grads(functools.partial(loss, temperature=temperature), z_a, z_b)
    blockwise = _value_and_grads(functools.partial(loss, temperature=temperature, block_size=block_size), z_a, z_b)
    _assert_close(blockwise, dense)


def test_blockwise_lse_golden_value():
  """Two anchors, three candidates, anchor 0 excludes candidate 0: log(e^{0/t} + e^{1/t}) etc. by hand."""
  anchors = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  candidates = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  lse = losses.contrastive_lse(anchors, candidates, jnp.array([0, -1]), 0.5, block_size=2)
  np.testing.assert_allclose(
    lse, [np.log(np.exp(0.0) + np.exp(-2.0)), np.log(2 * np.exp(0.0) + np.exp(2.0))], rtol=1e-6
  )


@pytest.mark.parametrize("block_size", [None, 8])
def test_shard_map_over_8_devices_equals_one_device(mesh8, block_size):
  """Each device keeps its rows as anchors and gathers the other devices' views: the global loss and gradients
  equal the single-device loss."""
  z_a, z_b, queue = _views(64)
  for loss in (nt_xent, info_nce, functools.partial(info_nce, negatives=queue)):
    loss = functools.partial(loss, temperature=0.2, block_size=block_size)
    sharded = jax.shard_map(
      functools.partial(loss, axis_name="data"), mesh=mesh8, in_specs=(P("data"), P("data")), out_specs=P()
    )
    _assert_close(_value_and_grads(sharded, z_a, z_b), _value_and_grads(loss, z_a, z_b))


def _compiled_temp_bytes(n, d, block_size):
  z = jax.ShapeDtypeStruct((n, d), jnp.float32)
  step = jax.jit(jax.value_and_grad(functools.partial(nt_xent, block_size=block_size), argnums=(0, 1)))
  return step.lower(z, z).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_memory_grows_with_n_times_block_not_n_squared():
  """XLA's buffer assignment for forward + backward (compile only): 2N = 65,536 x 128 with blocks of 1024 needs
  well under 1 GiB of temporaries, dense needs the 16 GiB matrix (and more)."""
  blockwise = {n: _compiled_temp_bytes(n, 128, 1024) for n in (4096, 32768)}
  assert blockwise[32768] < 2**30, blockwise
  assert blockwise[32768] < 12 * blockwise[4096]  # 8x the rows: linear, not 64x.
  assert _compiled_temp_bytes(32768, 128, None) > 16 * 2**30


@pytest.mark.slow  # 60 s; the default run checks the same bound at compile time (the test above).
def test_blockwise_65536_embeddings_forward_backward_peak_memory_under_3_gib():
  """Runs it in a fresh process, which prints its own peak resident memory (measured on 2 cores: 16.5 s,
  466 MiB; dense would need 32 GiB of logits and their gradient). The process's own figure: the peak over all
  children of the test process would include whatever other tests ran in subprocesses before."""
  code = (
    "import jax, jax.numpy as jnp, functools, resource; from ssljax.losses import nt_xent;"
    "z = jax.random.normal(jax.random.key(0), (32768, 128));"
    "f = jax.jit(jax.value_and_grad(functools.partial(nt_xent, block_size=1024), argnums=(0, 1)));"
    "v, g = f(z, z[::-1]); jax.block_until_ready(g);"
    "print(float(v), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
  )
  env = {**os.environ, "XLA_FLAGS": ""}
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  loss, peak_kib = result.stdout.split()[-2:]
  peak_gib = int(peak_kib) / 2**20
  assert np.isfinite(float(loss)) and peak_gib < 3, peak_gib


def test_blockwise_loops_once_over_column_blocks():
  """Forward and backward are one loop each over ceil(2N / block) column blocks, every anchor per trip (no
  nested loop over row tiles: (2N / block)^2 small trips are latency-bound on accelerators)."""
  z_a, z_b, _ = _views(20)
  jaxpr = jax.make_jaxpr(jax.value_and_grad(functools.partial(nt_xent, block_size=16), argnums=(0, 1)))(z_a, z_b)
  text = str(jaxpr)
  assert text.count("scan[") == 2, text.count("scan[")  # Forward, backward.
  assert text.count("length=3") == 2  # 40 candidates / 16 columns per trip.
