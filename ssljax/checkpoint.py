"""Orbax checkpoints of the train state in `WORKDIR/checkpoints`: periodic + final saves, resume from the newest
one that can be read.

- Atomic: orbax writes a step into a temporary directory and renames it once complete, so a crash mid-save
  leaves the previous checkpoints intact (an unfinished temporary directory is ignored on restore).
- Asynchronous: `save` returns once the arrays are copied off the accelerator; the files are written on a
  background thread while training goes on (`launch/bench_checkpoint.py` measures the overhead).
- Never non-finite: the train step only ever produces finite states (it skips an update with a non-finite loss,
  gradient or statistic), so `save` adds no pass over the state of its own.
- Fallback: a checkpoint that cannot be read (truncated, corrupted) is moved to `WORKDIR/checkpoints_unreadable/`
  with a warning and the one before it is restored; commands that only read a run (`read_only`: evaluate, embed,
  load_encoder) skip it with a warning and move nothing. A checkpoint that reads fine but does not fit the state the
  config builds raises `IncompatibleCheckpoint` instead: that is a config mistake, not damage.
"""

import functools

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from ssljax import paths
from ssljax.config import ConfigError

UNREADABLE_DIR = "checkpoints_unreadable"


class IncompatibleCheckpoint(ConfigError):
  """The newest checkpoint holds a state of another shape than the config builds."""


@functools.cache
def _whole_array_transfers():
  """Sets orbax's process-wide handler for jax.Array to copy each array off the devices whole (orbax's own default
  on GPUs) instead of in "replica-parallel" slices: on a host whose devices all hold a replicated state, the slices
  are one Python-dispatched op per array per device, which made a 92 MiB save block the train loop for ~200 ms on
  8 CPU devices instead of ~50 ms (`launch/bench_checkpoint.py`)."""
  handler = ocp.type_handlers.ArrayHandler(use_replica_parallel=False)
  try:  # Without orbax's "... overriding jax.Array" warning at every command (the override is meant): the
    # public `register_type_handler` cannot silence it, the registry behind it can.
    from orbax.checkpoint._src.serialization import type_handler_registry

    type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(jax.Array, handler, None, True, ignore_warnings=True)
  except (ImportError, AttributeError, TypeError):  # Another orbax layout: its warning stays.
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


def make_manager(
  workdir: str, max_to_keep: int = 3, asynchronous: bool = True, read_only: bool = False
) -> ocp.CheckpointManager:
  """The manager of `WORKDIR/checkpoints`; `read_only` creates, saves and deletes nothing."""
  _whole_array_transfers()
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, create=not read_only, read_only=read_only, enable_async_checkpointing=asynchronous
  )
  return ocp.CheckpointManager(
    paths.resolve(workdir) / "checkpoints", options=options, item_handlers=ocp.StandardCheckpointHandler()
  )


def abstract_like(shapes, shardings):
  """ShapeDtypeStructs carrying the shardings a restored state should have (restoring onto any mesh)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def _leaves_by_path(tree) -> dict:
  """{"params/encoder/conv/kernel": leaf} for a state (dataclass fields) or its saved metadata (dicts)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  return {"/".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path): leaf for path, leaf in leaves}


def _mismatch(saved_metadata, abstract_state) -> str | None:
  """The first difference between a checkpoint's arrays and the state's, or None when every array fits."""
  saved, wanted = _leaves_by_path(saved_metadata), _leaves_by_path(abstract_state)
  for path in sorted(saved.keys() ^ wanted.keys()):
    return f"{path} is {'only in the checkpoint' if path in saved else 'not in the checkpoint'}"
  for path, leaf in wanted.items():
    old = saved[path]
    if tuple(old.shape) != tuple(leaf.shape) or old.dtype != leaf.dtype:
      return f"{path} is {old.dtype.name}{list(old.shape)} in the checkpoint, {leaf.dtype.name}{list(leaf.shape)} now"
  return None


def _set_aside(manager: ocp.CheckpointManager, step: int, error: Exception):
  """Moves an unreadable checkpoint out of the way (keeping its files) so that training can save that step
  again."""
  source = epath.Path(manager.directory) / str(step)
  target_dir = source.parent.parent / UNREADABLE_DIR
  logging.warning("checkpoint %s cannot be read (%s: %s); moved to %s", source, type(error).__name__, error, target_dir)
  if jax.process_index() == 0:
    target_dir.mkdir(parents=True, exist_ok=True)
    name, suffix = str(step), 0
    while (target_dir / name).exists():  # Set aside before: keep both.
      suffix += 1
      name = f"{step}.{suffix}"
    source.rename(target_dir / name)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  manager.reload()


def _skip(manager: ocp.CheckpointManager, step: int, error: Exception):
  logging.warning(
    "checkpoint %s/%d cannot be read (%s: %s); skipped", manager.directory, step, type(error).__name__, error
  )


def saved_shape(manager: ocp.CheckpointManager, path: str) -> tuple | None:
  """The shape of the array at `path` (e.g. "params/probe/kernel") in the newest readable checkpoint (None if
  absent or if no checkpoint can be read)."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      leaf = _leaves_by_path(manager.item_metadata(step).tree).get(path)
    except Exception:  # noqa: BLE001 - damaged: `restore_latest` says so and skips it too.
      continue
    return None if leaf is None else tuple(leaf.shape)
  return None


def restore_latest(manager: ocp.CheckpointManager, abstract_state, set_aside: bool = True):
  """The newest readable saved state, laid out as `abstract_state`, or None when there is none. Unreadable
  checkpoints on the way are set aside (a run that will save that step again) or, without `set_aside`, skipped.

  Raises IncompatibleCheckpoint when the newest checkpoint holds arrays of other shapes or dtypes."""
  skip = _set_aside if set_aside else _skip
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      metadata = manager.item_metadata(step)
      if metadata is None:
        raise ValueError("no metadata")
    except Exception as error:  # noqa: BLE001 - any failure to read means the files are damaged.
      skip(manager, step, error)
      continue
    mismatch = _mismatch(metadata.tree, abstract_state)
    if mismatch:
      raise IncompatibleCheckpoint(f"checkpoint {step} does not fit the state this config builds: {mismatch}")
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as error:  # noqa: BLE001
      skip(manager, step, error)
  return None


def save(manager: ocp.CheckpointManager, state, force: bool = False) -> bool:
  """Starts an asynchronous save of `state` under its step; returns once the arrays are off the device."""
  return manager.save(int(state.step), args=ocp.args.StandardSave(state), force=force)
