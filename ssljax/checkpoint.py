"""Orbax checkpoints of the train state in `WORKDIR/checkpoints`: periodic + final saves, resume from the latest.

Orbax writes each step to a temporary directory and renames it when complete, so a crash mid-save leaves the
previous checkpoint intact.
"""

import os

import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def abstract_like(shapes, shardings):
  """ShapeDtypeStructs carrying the shardings a restored state should have (restoring onto any mesh)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def restore_latest(manager: ocp.CheckpointManager, abstract_state):
  """The newest saved state laid out as `abstract_state`, or None when there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def save(manager: ocp.CheckpointManager, state, force: bool = False):
  manager.save(int(state.step), args=ocp.args.StandardSave(state), force=force)
