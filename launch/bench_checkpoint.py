r"""What checkpointing costs the train loop: step time with a save every N steps, asynchronous (the default)
and synchronous, against the same loop without saving (the baseline).

  python -m launch.bench_checkpoint                          # SimCLR ResNet-18 at 32 px, batch 256, every 5
  python -m launch.bench_checkpoint --setting mae_vitb16_224 --batch_size 64 --every 10

Each mode first saves once untimed (orbax's first save creates directories and thread pools), then times one
save alone: "blocking ms" until `checkpoint.save` returns (what the loop waits for: the copy off the device) and
"write s" until the files are complete. Saves in the loop are spaced at least `write s` apart (a save waits for
the previous one to finish, so closer saves would measure that wait, not the save). "vs no save" is the loop's
mean step time divided by the baseline's: 1.00 means saving is free.
"""

import argparse
import math
import tempfile
import time

import jax

from launch.bench_step import SETTINGS, synthetic_setup
from ssljax import checkpoint, train_step


def _loop(trainer, state, batch, steps: int, manager=None, every: int = 0):
  """Runs `steps` steps, saving every `every`; returns (state, seconds per step, seconds blocked per save)."""
  blocked = []
  start = time.perf_counter()
  for step, new_state, _ in train_step.run_steps(trainer.step, state, ((i, batch) for i in range(steps))):
    state = new_state
    if manager is not None and (step + 1) % every == 0:
      jax.block_until_ready(state)  # Saving waits for the step anyway: time the save alone.
      save_start = time.perf_counter()
      checkpoint.save(manager, state)
      blocked.append(time.perf_counter() - save_start)
  jax.block_until_ready(state)
  return state, (time.perf_counter() - start) / steps, sum(blocked) / max(len(blocked), 1)


def one_save(manager, step_fn, state, batch):
  """(state, blocking seconds, seconds until the files are complete) of one save after one step."""
  state, _ = step_fn(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  checkpoint.save(manager, state)
  blocking = time.perf_counter() - start
  manager.wait_until_finished()
  return state, blocking, time.perf_counter() - start


def bench(setting: str, batch_size: int | None, steps: int, every: int, dtype: str) -> list[dict]:
  config, trainer, batch, state = synthetic_setup(setting, batch_size, dtype)
  state_mb = sum(x.nbytes for x in jax.tree.leaves(state)) / 2**20
  state, metrics = trainer.step(state, batch)  # Compile.
  jax.block_until_ready(metrics)
  state, baseline, _ = _loop(trainer, state, batch, steps)
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  rows = [{"device": device, "setting": "", "mode": "no save", "blocking ms": None, "write s": None}]
  rows[0].update({"step ms": baseline * 1e3, "vs no save": 1.0})
  for mode in ("async", "sync"):
    with tempfile.TemporaryDirectory() as directory:
      manager = checkpoint.make_manager(directory, max_to_keep=2, asynchronous=mode == "async")
      state, _, _ = one_save(manager, trainer.step, state, batch)  # Warm-up.
      state, blocking, write = one_save(manager, trainer.step, state, batch)
      spacing = max(every, math.ceil(write / baseline) + 1)
      state, step_s, blocked = _loop(trainer, state, batch, steps, manager, spacing)
      manager.wait_until_finished()  # Writes still running after the last step are not counted.
      manager.close()
    rows.append(
      {
        "device": device,
        "setting": f"{setting} {dtype} batch {config.batch_size}, {state_mb:.0f} MiB state, save every {spacing}",
        "mode": mode,
        "blocking ms": blocked * 1e3,
        "write s": write,
        "step ms": step_s * 1e3,
        "vs no save": step_s / baseline,
      }
    )
    print(f"{mode}: one save alone blocks {blocking * 1e3:.1f} ms", flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", choices=sorted(SETTINGS), default="simclr_resnet18_32")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--every", type=int, default=5, help="Save every N steps (at least a save's duration).")
  parser.add_argument("--dtype", default="float32")
  args = parser.parse_args()
  rows = bench(args.setting, args.batch_size, args.steps, args.every, args.dtype)
  print(" | ".join(rows[0]))
  for row in rows:
    print(" | ".join("n/a" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in row.values()))


if __name__ == "__main__":
  main()
