"""The device mesh and the shardings of batches and state.

One mesh with a "data" axis over all devices. Batches are split over it; the train state is replicated (an
issue on parameter sharding will add FSDP rules). Axis types are Auto, so jit partitions collectives itself:
`z @ z.T` on a batch-sharded `z` gathers the global batch, and BatchNorm averages over all devices.
"""

import jax
from jax.sharding import NamedSharding, PartitionSpec

from ssljax.config import ConfigError


def make_mesh() -> jax.sharding.Mesh:
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, key: str = "config.batch_size"):
  """Every device (and so every process) must get the same number of examples."""
  if batch_size <= 0 or batch_size % jax.device_count():
    raise ConfigError(f"{key}: {batch_size} is not a positive multiple of the {jax.device_count()} devices")
