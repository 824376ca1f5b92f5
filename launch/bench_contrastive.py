r"""Blockwise vs dense NT-Xent, forward + backward: peak temporary memory and time for 2N embeddings of dim 128.

  python -m launch.bench_contrastive                       # 2N = 8,192 and 65,536 (run) and 1,048,576 (memory)
  python -m launch.bench_contrastive --sizes 8192 --block_size 2048
  python -m launch.bench_contrastive --sharded --sizes 8192   # shard_map over all devices vs its all-gather alone

Memory is XLA's buffer assignment for the compiled step (temporaries, excluding inputs and outputs), so it is
known even where a run would not fit. Time is measured only up to --max_run_size embeddings. The baseline is the
dense loss ([2N, 2N] logits): "vs dense" is blockwise / dense for time and memory.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssljax import sharding
from ssljax.losses import nt_xent


def _step(block_size):
  loss = functools.partial(nt_xent, temperature=0.1, block_size=block_size)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _measure(n: int, dim: int, block_size, run: bool) -> dict:
  spec = jax.ShapeDtypeStruct((n // 2, dim), jnp.float32)
  try:
    compiled = _step(block_size).lower(spec, spec).compile()
  except jax.errors.JaxRuntimeError as error:  # GPU compilation autotunes with real buffers: too big to compile.
    return {"temp GiB": f"OOM ({str(error).split('allocate ')[-1].split(' with')[0]})", "ms": None}
  row = {"temp GiB": compiled.memory_analysis().temp_size_in_bytes / 2**30, "ms": None}
  if run:
    z_a, z_b = jax.random.normal(jax.random.key(0), (2, n // 2, dim))
    jax.block_until_ready(compiled(z_a, z_b))
    repeats = 3 if n <= 65536 else 1
    start = time.perf_counter()
    for _ in range(repeats):
      jax.block_until_ready(compiled(z_a, z_b))
    row["ms"] = (time.perf_counter() - start) / repeats * 1e3
  return row


def _time(fn, *args, repeats=3) -> float:
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats * 1e3


def sharded(n: int, dim: int, block_size: int) -> dict:
  """The shard_map loss over all devices (each keeps its anchors, gathers all embeddings) against the cost of
  its collectives alone (the all-gather and, for the gradient, the reduce-scatter of the embeddings)."""
  mesh = sharding.make_mesh()
  axes = sharding.batch_axes(mesh)
  loss = functools.partial(nt_xent, temperature=0.1, block_size=block_size, axis_name=axes)
  step = jax.jit(
    jax.value_and_grad(jax.shard_map(loss, mesh=mesh, in_specs=(P(axes), P(axes)), out_specs=P()), argnums=(0, 1))
  )

  def collectives(z):
    return jax.lax.psum_scatter(jax.lax.all_gather(z, axes, tiled=True), axes, tiled=True)

  gather = jax.jit(jax.shard_map(collectives, mesh=mesh, in_specs=P(axes), out_specs=P(axes)))
  z_a, z_b = jax.device_put(jax.random.normal(jax.random.key(0), (2, n // 2, dim)), NamedSharding(mesh, P(None, axes)))
  loss_ms = _time(step, z_a, z_b)
  collective_ms = 2 * _time(gather, z_a)  # Two embedding matrices (z_a, z_b).
  return {"loss ms": loss_ms, "collectives ms": collective_ms, "share": collective_ms / loss_ms}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 65536, 1048576], help="2N, the embeddings.")
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--block_size", type=int, default=1024)
  parser.add_argument("--max_run_size", type=int, default=65536, help="Larger sizes: memory only.")
  parser.add_argument("--dense_memory_limit_gib", type=float, default=16.0, help="Dense runs only below this.")
  parser.add_argument("--sharded", action="store_true", help="Time the shard_map loss over all devices.")
  args = parser.parse_args()
  if args.sharded:
    print("device | 2N | dim | block | shard_map loss ms | all-gather + reduce-scatter ms | share")
    for n in args.sizes:
      row = sharded(n, args.dim, args.block_size)
      print(
        f"{jax.device_count()} x {jax.devices()[0].device_kind} | {n} | {args.dim} | {args.block_size} | "
        f"{row['loss ms']:.4g} | {row['collectives ms']:.4g} | {row['share']:.3f}"
      )
    return
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  print("device | 2N | dim | block | dense temp GiB | blockwise temp GiB | dense ms | blockwise ms | vs dense (time)")
  for n in args.sizes:
    run = n <= args.max_run_size
    dense = _measure(n, args.dim, None, False)
    if run and isinstance(dense["temp GiB"], float) and dense["temp GiB"] < args.dense_memory_limit_gib:
      dense = _measure(n, args.dim, None, True)
    blockwise = _measure(n, args.dim, args.block_size, run)
    ratio = blockwise["ms"] / dense["ms"] if blockwise["ms"] and dense["ms"] else None
    cells = [
      device,
      n,
      args.dim,
      args.block_size,
      dense["temp GiB"],
      blockwise["temp GiB"],
      dense["ms"],
      blockwise["ms"],
      ratio,
    ]
    print(" | ".join("n/a" if c is None else (f"{c:.4g}" if isinstance(c, float) else str(c)) for c in cells))


if __name__ == "__main__":
  main()
