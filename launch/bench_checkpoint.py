r"""What checkpointing costs the train loop: step time with a save every N steps, asynchronous (the default)
and synchronous, against no saving (the baseline).

  python -m launch.bench_checkpoint                          # SimCLR ResNet-18 at 32 px, batch 256, every 5
  python -m launch.bench_checkpoint --setting mae_vitb16_224 --batch_size 64 --every 10

The "vs no save" column is the mean step time divided by the baseline's: 1.00 means saving is free.
"""

import argparse
import tempfile
import time

import jax
import orbax.checkpoint as ocp

from launch.bench_step import SETTINGS, synthetic_setup
from ssljax import checkpoint, train_step


def _manager(directory: str, asynchronous: bool) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=asynchronous)
  return ocp.CheckpointManager(directory, options=options, item_handlers=ocp.StandardCheckpointHandler())


def bench(setting: str, batch_size: int | None, steps: int, every: int, dtype: str) -> list[dict]:
  config, trainer, batch, state = synthetic_setup(setting, batch_size, dtype)
  state_mb = sum(x.nbytes for x in jax.tree.leaves(state)) / 2**20
  state, metrics = trainer.step(state, batch)  # Compile.
  jax.block_until_ready(metrics)

  rows, baseline = [], None
  for mode in ("no save", "async", "sync"):
    with tempfile.TemporaryDirectory() as directory:
      manager = None if mode == "no save" else _manager(directory, mode == "async")
      start = time.perf_counter()
      for step, new_state, _ in train_step.run_steps(trainer.step, state, ((i, batch) for i in range(steps))):
        state = new_state
        if manager is not None and (step + 1) % every == 0:
          checkpoint.save(manager, state)
      jax.block_until_ready(state)
      step_s = (time.perf_counter() - start) / steps
      if manager is not None:
        manager.wait_until_finished()  # Writes still running after the last step are not counted.
        manager.close()
    baseline = baseline or step_s
    rows.append(
      {
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "setting": f"{setting} {dtype} batch {config.batch_size}, {state_mb:.0f} MiB state, save every {every}",
        "mode": mode,
        "step ms": step_s * 1e3,
        "vs no save": step_s / baseline,
      }
    )
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", choices=sorted(SETTINGS), default="simclr_resnet18_32")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--every", type=int, default=5)
  parser.add_argument("--dtype", default="float32")
  args = parser.parse_args()
  rows = bench(args.setting, args.batch_size, args.steps, args.every, args.dtype)
  print(" | ".join(rows[0]))
  for row in rows:
    print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
  main()
