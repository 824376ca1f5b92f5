"""The device mesh, and how batches, parameters and optimizer state are laid out on it.

`config.mesh` names the axes and their sizes, e.g. (("data", -1), ("fsdp", 1), ("model", 1)) (-1: the devices
left). Axis types are Auto, so jit (GSPMD) inserts the collectives: `z @ z.T` on a batch-sharded `z` gathers the
global batch, BatchNorm averages over all devices, FSDP parameters are all-gathered where they are used.

- Batches are split over every axis but "model" (FSDP is data parallelism too).
- Parameters: tensor parallelism by logical axis names (`TENSOR_PARALLEL_RULES`: a ViT's attention heads and
  MLP hidden units over "model"), then FSDP: the largest dimension left that "fsdp" divides is sharded over it.
  Parameters without names (ResNet) get FSDP only. Optimizer state and an EMA teacher's parameters follow their
  parameters. Buffers with a dimension named "examples" (DeepCluster-v2's memory bank: one row per training
  example) are split over the batch axes along it; the rest (step, rng, BatchNorm statistics, queues, centres)
  is replicated.
"""

import math

import flax.linen as nn
import jax
import optax
from jax.sharding import NamedSharding, PartitionSpec

from ssljax.config import ConfigError
from ssljax.optim import PlayerOptimizers

DEFAULT_MESH = (("data", -1), ("fsdp", 1), ("model", 1))
MESH_AXES = ("data", "fsdp", "model")
TENSOR_PARALLEL_RULES = {"heads": "model", "mlp": "model"}  # Logical axis name -> mesh axis.


def make_mesh(mesh_config=DEFAULT_MESH, devices=None) -> jax.sharding.Mesh:
  """The mesh `config.mesh` describes over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  names = tuple(name for name, _ in mesh_config)
  sizes = [size for _, size in mesh_config]
  if set(names) - set(MESH_AXES) or len(set(names)) != len(names):
    raise ConfigError(f"config.mesh: axis names {names} must be distinct, from {MESH_AXES}")
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ConfigError(f"config.mesh: sizes {tuple(sizes)} must be positive, with at most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ConfigError(f"config.mesh: {dict(zip(names, sizes, strict=True))} does not use the {len(devices)} devices")
  return jax.make_mesh(tuple(sizes), names, axis_types=(jax.sharding.AxisType.Auto,) * len(names), devices=devices)


def batch_axes(mesh) -> tuple[str, ...]:
  return tuple(name for name in mesh.axis_names if name != "model")


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_devices(mesh) -> int:
  """How many ways a batch is split."""
  return math.prod(mesh.shape[name] for name in batch_axes(mesh))


def check_batch_size(batch_size: int, key: str = "config.batch_size", ways: int | None = None):
  """Every device (and so every process) must get the same number of examples."""
  ways = jax.device_count() if ways is None else ways
  if batch_size <= 0 or batch_size % ways:
    raise ConfigError(f"{key}: {batch_size} is not a positive multiple of the {ways} devices")


def param_spec(shape, logical_names, mesh) -> PartitionSpec:
  """Tensor parallelism from the logical names, then FSDP on the largest remaining dimension "fsdp" divides."""
  names = tuple(logical_names) if logical_names else (None,) * len(shape)
  spec = []
  for size, name in zip(shape, names, strict=True):
    axis = TENSOR_PARALLEL_RULES.get(name)
    spec.append(axis if axis in mesh.shape and mesh.shape[axis] > 1 and size % mesh.shape[axis] == 0 else None)
  fsdp = mesh.shape.get("fsdp", 1)
  free = [d for d, (size, axis) in enumerate(zip(shape, spec, strict=True)) if axis is None and size % fsdp == 0]
  if fsdp > 1 and free:
    spec[max(free, key=lambda d: shape[d])] = "fsdp"
  return PartitionSpec(*spec)


def buffer_spec(shape, logical_names, mesh) -> PartitionSpec:
  """A buffer's dimension named "examples" over the batch axes (when they divide it); nothing else split."""
  names = tuple(logical_names) if logical_names else (None,) * len(shape)
  ways = batch_devices(mesh)
  return PartitionSpec(
    *(
      batch_axes(mesh) if name == "examples" and size % ways == 0 else None
      for size, name in zip(shape, names, strict=True)
    )
  )


def state_sharding(
  state_shapes, logical_params, tx: optax.GradientTransformation | PlayerOptimizers, mesh, logical_state=None
):
  """NamedShardings for a TrainState: parameters and their optimizer state by `param_spec`, buffers by
  `buffer_spec`, the rest replicated.

  `logical_params` / `logical_state`: the logical axis names of the parameters / of the other collections (trees
  of PartitionSpecs of names, from `nn.get_partition_spec` on the boxed variables), same structure as
  `state_shapes.params` / `state_shapes.model_state`."""

  def spec(shape, names):
    return NamedSharding(mesh, param_spec(shape.shape, tuple(names), mesh))

  params = jax.tree.map(spec, state_shapes.params, logical_params)

  def optimizer_state(tx, opt_state, params):
    return optax.tree_map_params(
      tx,
      # Optimizer groups (optax.multi_transform) hold MaskedNode placeholders for the other groups' parameters.
      lambda leaf, sharding: leaf if isinstance(leaf, optax.MaskedNode) else sharding,
      opt_state,
      params,
      transform_non_params=lambda _: replicated(mesh),
      is_leaf=lambda x: isinstance(x, NamedSharding | optax.MaskedNode),
    )

  if isinstance(tx, PlayerOptimizers):  # Each player's state is laid out as its own parameters.
    opt_state = {
      name: optimizer_state(player_tx, state_shapes.opt_state[name], params[subtree])
      for name, (subtree, player_tx) in tx.optimizers.items()
    }
  else:
    opt_state = optimizer_state(tx, state_shapes.opt_state, params)
  everything_replicated = jax.tree.map(lambda _: replicated(mesh), state_shapes)
  model_state = everything_replicated.model_state
  if logical_state is not None:
    model_state = jax.tree.map(
      lambda shape, names: NamedSharding(mesh, buffer_spec(shape.shape, tuple(names), mesh)),
      state_shapes.model_state,
      logical_state,
    )
  # An EMA teacher's parameters are laid out as the parameters they follow (FSDP / tensor parallel alike).
  target = {**everything_replicated.target, **({"params": params} if "params" in state_shapes.target else {})}
  return everything_replicated.replace(params=params, model_state=model_state, opt_state=opt_state, target=target)


def logical_names(boxed_params):
  """{param: PartitionSpec of logical axis names} from parameters boxed with `nn.with_logical_partitioning`
  (an empty spec for unnamed ones)."""
  return nn.get_partition_spec(boxed_params)
