r"""Throughput of the shared train step on synthetic data: images/s, compile time and model-FLOPs utilisation.

  python -m launch.bench_step                                    # every setting below, bf16
  python -m launch.bench_step --setting simclr_resnet18_32 --batch_size 256 --steps 5
  python -m launch.bench_step --setting mae_vitb16_224

MFU = (FLOPs of one step) / (step time) / (the chip's dense bf16 peak), printed on accelerators whose peak is in
PEAK_BF16_FLOPS. The FLOPs are XLA's cost analysis of the step *before* optimisation ("TFLOP/step"): the
compiled module's analysis misses what runs in library calls (cuDNN convolutions on GPUs are custom calls with no
FLOP count); "compiled/lowered" shows the fraction it still sees. XLA counts a multiply-add as 2 FLOPs, so
ResNet-50 at 224 px is ~8 GFLOP forward per view and ~3x that per trained view ("GFLOP/view" also holds the
augmentation, head, loss and optimizer). "augment share" is the augmentation's share of the compiled step's bytes
accessed (XLA's count; the on-device augmentations are memory-bound). "vs goal" is the ratio to the setting's
per-accelerator goal: SimCLR ResNet-50 at 224 px, 3,500 images/s = 7,000 views/s on one H100 (MLPerf-level per
GPU); MAE ViT-B/16, 40% MFU on one H100.
"""

import argparse
import collections
import time

import jax
import numpy as np

from configs import (
  byol_imagenet,
  dino_imagenet,
  mae_vit_base_imagenet,
  moco_v3_imagenet,
  simclr_cifar10,
  simclr_imagenet,
)
from ssljax import sharding, train_step
from ssljax.models import vit

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v4": 275e12, "TPU v5p": 459e12}
# name: (config module, its get_config argument, default batch, goal: ("images/s", per-device value) or ("MFU",
# fraction), or None).
SETTINGS = {
  "simclr_resnet50_224": (simclr_imagenet, "", 256, ("images/s", 3500.0)),
  "simclr_resnet18_32": (simclr_cifar10, "", 512, None),
  "mae_vitb16_224": (mae_vit_base_imagenet, "", 256, ("MFU", 0.4)),
  "byol_resnet50_224": (byol_imagenet, "", 256, None),
  "moco_v3_vitb16_224": (moco_v3_imagenet, "vit_base", 128, ("MFU", 0.4)),
  "dino_vits16_multicrop": (dino_imagenet, "vit_small", 128, ("MFU", 0.4)),
}


def peak_flops(device) -> float | None:
  return next((peak for name, peak in PEAK_BF16_FLOPS.items() if name in device.device_kind), None)


def setting_config(setting: str, batch_size: int | None, dtype: str, tiny: bool = False):
  """A setting's config. `tiny`: its `runlocal` variant (small model, 32 px), so that a benchmark runs on a CPU
  in seconds (the accelerator report's test)."""
  module, arg, default_batch, _ = SETTINGS[setting]
  config = module.get_config(",".join(a for a in (arg, "runlocal" if tiny else "") if a))
  config.update(batch_size=batch_size or default_batch, total_steps=1000, dtype=dtype)
  if tiny:
    config.dataset.image_size = min(config.dataset.image_size, 32)
  return config


def synthetic_batch(config, trainer, rng) -> dict:
  """A random batch in the form a real run of the config feeds the step: with `dataset.host_crops` (the ImageNet
  configs) one uint8 crop per view, cut on the host, else the images."""
  size, channels = config.dataset.image_size, config.dataset.channels
  batch = {"label": rng.integers(0, 1000, config.batch_size).astype(np.int32)}
  if config.dataset.get("host_crops"):
    shapes = [(config.batch_size, view.size, view.size, channels) for view in trainer.method.crops]
    batch["crops"] = tuple(rng.integers(0, 256, shape, np.uint8) for shape in shapes)
  else:
    batch["image"] = rng.random((config.batch_size, size, size, channels), np.float32)
  return batch


def synthetic_setup(setting: str, batch_size: int | None, dtype: str, tiny: bool = False):
  """(config, trainer, a random batch on the mesh, a fresh state) for a setting: what every step benchmark needs."""
  config = setting_config(setting, batch_size, dtype, tiny)
  trainer = train_step.build_trainer(config, sharding.make_mesh(), num_examples=10**6, num_classes=1000)
  batch = synthetic_batch(config, trainer, np.random.default_rng(0))
  return config, trainer, jax.device_put(batch, trainer.batch_sharding), trainer.make_state(0)


def _cost(lowered_or_compiled) -> dict:
  cost = lowered_or_compiled.cost_analysis()
  return cost[0] if isinstance(cost, list) else cost


def step_flops(config) -> float:
  """XLA's FLOP count of a config's train step before optimisation (a convolution or an attention is still one
  op there; the compiled module's count misses what runs in library calls), from a lowering for one CPU device:
  the GPU plugins implement no cost analysis of a lowered module. Nothing is allocated; attention is lowered as
  XLA's, so the count is the model's whichever kernel runs it."""
  with vit.forced_attention("xla"):
    mesh = sharding.make_mesh(devices=jax.devices("cpu")[:1])
    trainer = train_step.build_trainer(config, mesh, num_examples=10**6, num_classes=1000)
    state = jax.eval_shape(trainer.make_state, 0)
    batch = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), synthetic_batch(config, trainer, np.random.default_rng(0))
    )
    return _cost(trainer.step.lower(state, batch))["flops"]


def bench(setting: str, batch_size: int | None, steps: int, dtype: str) -> dict:
  goal = SETTINGS[setting][3]
  config, trainer, batch, state = synthetic_setup(setting, batch_size, dtype)

  start = time.perf_counter()
  lowered = trainer.step.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  flops = step_flops(config)
  augment = jax.jit(trainer.method.make_inputs).lower(batch, jax.random.key(0)).compile()

  state, metrics = compiled(state, batch)  # Warm-up.
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  steps_run = train_step.run_steps(compiled, state, ((i, batch) for i in range(steps)))
  _, state, metrics = collections.deque(steps_run, maxlen=1)[0]
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / steps
  device = jax.devices()[0]
  peak = peak_flops(device)
  images_per_s = config.batch_size / step_s
  mfu = flops / step_s / (peak * jax.device_count()) if peak else None
  if goal is None or (goal[0] == "MFU" and mfu is None):
    vs_goal = None
  else:
    vs_goal = mfu / goal[1] if goal[0] == "MFU" else images_per_s / (goal[1] * jax.device_count())
  return {
    "device": f"{jax.device_count()} x {device.device_kind}",
    "setting": f"{setting} {dtype} batch {config.batch_size}",
    "images/s": images_per_s,
    "step ms": step_s * 1e3,
    "compile s": compile_s,
    "TFLOP/step": flops / 1e12,
    "GFLOP/view": flops / 1e9 / (config.batch_size * trainer.method.views_per_image),
    "compiled/lowered": _cost(compiled).get("flops", float("nan")) / flops,
    "augment share": _cost(augment)["bytes accessed"] / _cost(compiled)["bytes accessed"],
    "MFU": mfu,
    "vs goal": vs_goal,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", choices=sorted(SETTINGS), action="append")
  parser.add_argument("--batch_size", type=int, default=None, help="Images per step (SimCLR: 2 views each).")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--dtype", default="bfloat16")
  args = parser.parse_args()
  rows = [bench(s, args.batch_size, args.steps, args.dtype) for s in args.setting or sorted(SETTINGS)]
  columns = list(rows[0])
  print(" | ".join(columns))
  for row in rows:
    cells = [f"{v:.3g}" if isinstance(v, float) else ("n/a" if v is None else str(v)) for v in row.values()]
    print(" | ".join(cells))


if __name__ == "__main__":
  main()
