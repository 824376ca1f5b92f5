r"""One accelerator report: every speed check of the project in one command, printed as one markdown table.

  python -m launch.accelerator_report --out DIR     # on an accelerator: about 5 minutes on one H200
  python -m launch.accelerator_report --tiny        # on a CPU, toy sizes: what tests/test_accelerator_report runs

Each row names its baseline and its ratio to it:
- Train steps (the settings of `launch.bench_step`, bf16, synthetic batches in the form real runs feed them: the
  ImageNet configs' crops cut on the host as uint8): SimCLR and BYOL ResNet-50, MoCo v3 ViT-B/16, DINO ViT-S/16
  with 2 x 224 + 10 x 96 px crops, MAE ViT-B/16 with cuDNN's fused attention and with XLA's. Views/s, MFU by
  XLA's FLOP count of the step before optimisation (the teacher's forward included; fused library calls still
  count there), compile time, and from a profile of two steps each named scope's share of the kernel time
  (augment, teacher, forward_backward, optimizer, guard) and the share of the step the device sat idle.
- The PyTorch steps a user would pick instead (`launch.torch_peers`): compiled and warmed up in a subprocess while
  ours compile, then timed with nothing else running.
- cuDNN vs XLA attention at ViT-B/16's shapes (values and gradients, bf16).
- Blockwise vs dense NT-Xent at 2N = 8,192, 65,536 and 1,048,576 embeddings.
- Checkpoint save blocking at the SimCLR ResNet-50 train state; the HLO census of its step (`launch.hlo_census`).

The steps compile in parallel threads (XLA compiles without holding the GIL), so each one's compile time is longer
than it would be alone; the table gives the wall time of them all. `--out DIR` also writes the table
(`report.md`) and `profiles.tar.gz`: each step's profile (`*.xplane.pb`, read with `jax.profiler.ProfileData`) and
optimised HLO, to study the report's causes without an accelerator.
"""

import os

# Half the accelerator's memory for JAX (it takes 75% at start by default): the rest is the PyTorch peers'.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")

import argparse  # noqa: E402
import collections  # noqa: E402
import concurrent.futures  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import pstats  # noqa: E402
import queue  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from launch import bench_checkpoint, bench_contrastive, hlo_census  # noqa: E402
from launch.bench_step import peak_flops, step_flops, synthetic_setup  # noqa: E402
from ssljax import checkpoint, train_step  # noqa: E402
from ssljax.models import vit  # noqa: E402

# (row, bench_step setting, attention kernel to force or None).
STEP_CHECKS = (
  ("SimCLR ResNet-50", "simclr_resnet50_224", None),
  ("BYOL ResNet-50", "byol_resnet50_224", None),
  ("MoCo v3 ViT-B/16", "moco_v3_vitb16_224", None),
  ("DINO ViT-S/16, 2 x 224 + 10 x 96 px", "dino_vits16_multicrop", None),
  ("MAE ViT-B/16, cuDNN attention", "mae_vitb16_224", "cudnn"),
  ("MAE ViT-B/16, XLA attention", "mae_vitb16_224", "xla"),
)
SIMCLR_GOAL_VIEWS_PER_S = 7000.0  # One H100 / H200-class GPU (issue 21).
VIT_GOAL_MFU = 0.4
SAVE_GOAL_S = 0.2
NT_XENT_64K_GOAL_MS = 50.0
ATTENTION_TOLERANCE = 2e-2  # bf16.


@dataclasses.dataclass
class Step:
  """One compiled train step and what it runs on."""

  config: Any
  trainer: Any
  batch: Any
  state: Any
  compiled: Any
  compile_s: float
  flops: float
  views: int  # Crops per step (all views of all images).


def compile_step(setting: str, attention: str | None, batch_size: int | None, dtype: str, tiny: bool) -> Step:
  """Builds, lowers and compiles a setting's train step (safe to run in a thread: the forced attention kernel is
  a context variable of this thread)."""
  forced = vit.forced_attention(attention) if attention else contextlib.nullcontext()
  with forced:
    config, trainer, batch, state = synthetic_setup(setting, batch_size, dtype, tiny)
    start = time.perf_counter()
    lowered = trainer.step.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  views = config.batch_size * max(len(trainer.method.crops), 1)
  return Step(config, trainer, batch, state, compiled, compile_s, step_flops(config), views)


def time_step(step: Step, steps: int) -> float:
  """Seconds per step after one warm-up step (the state moves on: the step donates it)."""
  step.state, metrics = step.compiled(step.state, step.batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  batches = ((i, step.batch) for i in range(steps))
  *_, (_, step.state, metrics) = train_step.run_steps(step.compiled, step.state, batches)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / steps


# Lines of a device plane that repeat the kernels' time at another level (modules, ops, steps), not kernels.
_DERIVED_LINES = ("XLA Modules", "XLA Ops", "XLA TraceMe", "Steps", "Framework", "Source", "Launch Stats")


def profile_step(step: Step, steps: int, keep: pathlib.Path | None, name: str) -> dict:
  """Runs `steps` steps under the profiler and summarises their kernels (`profile_summary`); with `keep`, saves
  the profile and the optimised HLO there as NAME.xplane.pb and NAME.hlo.txt."""
  hlo_text = step.compiled.as_text()
  with tempfile.TemporaryDirectory() as directory:
    jax.profiler.start_trace(directory)
    start = time.perf_counter()
    for _ in range(steps):
      step.state, metrics = step.compiled(step.state, step.batch)
    jax.block_until_ready(metrics)
    wall_s = time.perf_counter() - start
    jax.profiler.stop_trace()
    path = next(pathlib.Path(directory).rglob("*.xplane.pb"))
    events = kernel_events(path)
    if keep is not None:
      (keep / f"{name}.xplane.pb").write_bytes(path.read_bytes())
      (keep / f"{name}.hlo.txt").write_text(hlo_text)
  return profile_summary(events, hlo_text, steps, wall_s)


def _kernel_key(name: str) -> str:
  """A kernel's name is its HLO instruction's with "." and "-" as "_" (fusion.3 -> fusion_3)."""
  return name.replace(".", "_").replace("-", "_")


def profile_summary(events, hlo_text: str, steps: int, wall_s: float) -> dict:
  """{"kernel s": kernel time per step, "idle": share of the steps' wall time with no kernel running, "scopes":
  {scope: share of kernel time}, "top": [(op or kernel, scope, kernel, launches per step, share)]}.

  Kernels are matched to the step's named scopes through the optimised HLO's op_name metadata: by their "hlo_op",
  or, inside a GPU command buffer (whose "hlo_op" names the buffer), by their own name, which is their fusion's.
  Library kernels inside command buffers (cuDNN, cuBLAS) match neither: "library (command buffer)"."""
  scopes = {_kernel_key(name): scope for name, scope in hlo_census.instruction_scopes(hlo_text).items()}
  by_scope, by_op, launches, kernels = collections.Counter(), collections.Counter(), collections.Counter(), {}
  for op, kernel, _, duration in events:
    if _kernel_key(op) in scopes:
      key = op
    elif _kernel_key(kernel) in scopes:
      key = kernel
    else:
      key = kernel.split("<")[0][:60]
    by_scope[scopes.get(_kernel_key(key), "library (command buffer)")] += duration
    by_op[key] += duration
    launches[key] += 1
    kernels.setdefault(key, kernel)
  total = sum(by_scope.values()) or 1.0
  busy = _union_seconds([(begin, begin + duration) for _, _, begin, duration in events])
  top = [
    (
      key,
      scopes.get(_kernel_key(key), "library (command buffer)"),
      kernels[key],
      launches[key] / steps,
      seconds / total,
    )
    for key, seconds in by_op.most_common(8)
  ]
  return {
    "kernel s": total / steps,
    "idle": max(0.0, 1.0 - busy / wall_s),
    "scopes": {scope: seconds / total for scope, seconds in by_scope.most_common()},
    "top": top,
  }


def kernel_events(xspace_path: pathlib.Path) -> list[tuple[str, str, float, float]]:
  """(hlo op, kernel name, start s, duration s) of every kernel of a train step in a profile: the device planes'
  stream lines, or on a CPU the host's thunks."""
  from jax.profiler import ProfileData

  data = ProfileData.from_file(str(xspace_path))
  planes = [p for p in data.planes if p.name.startswith("/device:")] or [p for p in data.planes if "CPU" in p.name]
  events = []
  for plane in planes:
    for line in plane.lines:
      if line.name.startswith(_DERIVED_LINES):
        continue
      for event in line.events:
        stats = dict(event.stats)
        if "train_step" in str(stats.get("hlo_module", "")) and "hlo_op" in stats:
          events.append((str(stats["hlo_op"]), event.name, event.start_ns * 1e-9, event.duration_ns * 1e-9))
  return events


def _union_seconds(intervals) -> float:
  total, end = 0.0, -np.inf
  for begin, finish in sorted(intervals):
    if finish > end:
      total += finish - max(begin, end)
      end = finish
  return total


def attention_equality(shape=(4, 197, 12, 64)) -> dict:
  """Largest |cuDNN - XLA| over the output of the ViT's attention (`vit.dot_product_attention`, which pads odd
  lengths for cuDNN) and its gradients, bf16."""
  q, k, v = jax.random.normal(jax.random.key(0), (3, *shape), jnp.bfloat16)

  def value_and_grads(implementation):
    loss = lambda q, k, v: vit.dot_product_attention(q, k, v, implementation).astype(jnp.float32).sum()  # noqa: E731
    output = jax.jit(vit.dot_product_attention, static_argnums=3)(q, k, v, implementation)
    return output, jax.jit(jax.grad(loss, (0, 1, 2)))(q, k, v)

  (out_cudnn, grads_cudnn), (out_xla, grads_xla) = value_and_grads("cudnn"), value_and_grads("xla")
  difference = lambda a, b: float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))  # noqa: E731
  return {
    "output": difference(out_cudnn, out_xla),
    "gradients": max(jax.tree.leaves(jax.tree.map(difference, grads_cudnn, grads_xla))),
  }


def nt_xent_rows(sizes, dim: int, block_sizes, dense_limit_gib: float, run_limit_s: float) -> list[dict]:
  """Blockwise (each of `block_sizes`) vs dense NT-Xent forward + backward at each 2N of `sizes`: time and XLA's
  temporary memory. Dense runs while its [2N, 2N] logits fit `dense_limit_gib` (and is not even compiled past
  four times that: GPU compilers autotune with real buffers); blockwise runs while the quadratic extrapolation
  from the size before stays under `run_limit_s`."""
  results = []
  for i, n in enumerate(sizes):
    dense = {"temp GiB": None, "ms": None}
    if 3 * 4 * n**2 / 2**30 < 4 * dense_limit_gib:
      dense = bench_contrastive._measure(n, dim, None, False)
      if isinstance(dense["temp GiB"], float) and dense["temp GiB"] < dense_limit_gib:
        dense = bench_contrastive._measure(n, dim, None, True)
    for block_size in block_sizes:
      previous = [r for r in results if r["block"] == block_size]
      estimate = None
      if i and previous and previous[-1]["blockwise"]["ms"]:
        estimate = previous[-1]["blockwise"]["ms"] * (n / sizes[i - 1]) ** 2
      run = estimate is None or estimate / 1e3 < run_limit_s
      blockwise = bench_contrastive._measure(n, dim, block_size, run)
      row = {"n": n, "block": block_size, "dense": dense, "blockwise": blockwise}
      results.append({**row, "estimate ms": None if run else estimate})
  return results


def checkpoint_blocking(step: Step) -> dict:
  """Blocking and total seconds of one asynchronous save of the step's state (after one untimed save)."""
  state_mib = sum(x.nbytes for x in jax.tree.leaves(step.state)) / 2**20
  with tempfile.TemporaryDirectory() as directory:
    manager = checkpoint.make_manager(directory, max_to_keep=2, asynchronous=True)
    step.state, _, _ = bench_checkpoint.one_save(manager, step.compiled, step.state, step.batch)
    step.state, blocking, write = bench_checkpoint.one_save(manager, step.compiled, step.state, step.batch)
    step.state, _ = step.compiled(step.state, step.batch)
    jax.block_until_ready(step.state)
    profiler = cProfile.Profile()  # Where the blocking time goes, printed to the log (not part of the timing).
    profiler.runcall(checkpoint.save, manager, step.state)
    manager.wait_until_finished()
    manager.close()
  pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
  return {"blocking s": blocking, "write s": write, "state MiB": state_mib}


class TorchPeers:
  """`launch.torch_peers --serve` in a subprocess: it compiles while ours do, and is timed alone on `run()`."""

  def __init__(self, batch_size: int, image_size: int, steps: int, tiny: bool, log: pathlib.Path):
    command = [sys.executable, "-m", "launch.torch_peers", "--serve", "--steps", str(steps)]
    command += ["--simclr_batch", str(batch_size), "--mae_batch", str(batch_size), "--image_size", str(image_size)]
    command += ["--tiny", "--device", "cpu", "--no_compile"] if tiny else []
    self._log = open(log, "w")  # noqa: SIM115 - open until the peers finish.
    self._process = subprocess.Popen(
      command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=_repo_root()
    )
    self._lines = queue.Queue()
    threading.Thread(target=lambda: [self._lines.put(line) for line in self._process.stdout], daemon=True).start()

  def run(self, timeout_s: float) -> dict:
    """{peer: {"views/s", "step ms", ...}}, or {"error": why}."""
    deadline = time.monotonic() + timeout_s
    results = {}
    try:
      while (line := self._lines.get(timeout=max(deadline - time.monotonic(), 0.1))) != "READY\n":
        print(f"torch peers: {line.rstrip()}", flush=True)
      self._process.stdin.write("GO\n")
      self._process.stdin.flush()
      while len(results) < 2:
        result = json.loads(self._lines.get(timeout=max(deadline - time.monotonic(), 0.1)))
        results[result["peer"]] = result
    except queue.Empty:
      self._process.kill()
      self._log.flush()
      tail = pathlib.Path(self._log.name).read_text().strip().splitlines()[-1:]
      return {"error": f"no result in {timeout_s:.0f} s (exit code {self._process.poll()}): {' '.join(tail)}"}
    finally:
      self._process.wait(timeout=60)
      self._log.close()
    return results


class Failure(str):
  """Why a check failed (its row says so; the other checks still run)."""


def attempt(what: str, fn, *args, **kwargs):
  """`fn(*args, **kwargs)`, or a `Failure` naming `what` and the error: one broken check loses no other."""
  try:
    return fn(*args, **kwargs)
  except Exception as error:  # noqa: BLE001 - any error of a check becomes its row.
    traceback.print_exc()
    return Failure(f"{what} failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:300]}")


def _repo_root() -> pathlib.Path:
  return pathlib.Path(__file__).resolve().parent.parent


def _commit() -> str:
  try:
    command = ["git", "rev-parse", "--short", "HEAD"]
    return subprocess.run(command, capture_output=True, text=True, cwd=_repo_root(), check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _fmt(value, digits: int = 3) -> str:
  if value is None:
    return "n/a"
  if isinstance(value, float):
    return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
  return str(value)


def _pct(value) -> str:
  return "n/a" if value is None else f"{100 * value:.1f}%"


def step_cells(step: Step, seconds: float, profile, peak: float | None) -> tuple[str, dict]:
  mfu = step.flops / seconds / (peak * jax.device_count()) if peak else None
  result = f"{_fmt(step.views / seconds)} views/s ({_fmt(seconds * 1e3)} ms/step), MFU {_pct(mfu)}, "
  result += f"compile {_fmt(step.compile_s)} s; "
  if isinstance(profile, Failure):
    result += str(profile)
  else:
    scopes = ", ".join(f"{scope} {_pct(share)}" for scope, share in profile["scopes"].items() if share >= 0.005)
    result += f"kernel time: {scopes}; device idle {_pct(profile['idle'])}"
  return result, {"views/s": step.views / seconds, "MFU": mfu, "ms": seconds * 1e3}


def setting_text(step: Step) -> str:
  config = step.config
  views = f"{step.views} views" if step.views != config.batch_size else "images"
  return f"{config.dtype}, batch {config.batch_size} ({views}), {config.dataset.image_size} px"


def ratio(value, baseline):
  return value / baseline if value is not None and baseline else None


def step_rows(checks, args, dtype: str, batch_size: int | None, gpu: bool, keep, peers) -> tuple[list, list, dict]:
  """The train steps' rows, the census and checkpoint rows of the SimCLR step, and the PyTorch peers' results."""
  compile_start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(len(checks)) as pool:
    futures = [
      pool.submit(attempt, f"compiling {row}", compile_step, setting, gpu and attention, batch_size, dtype, args.tiny)
      for row, setting, attention in checks
    ]
    steps = [future.result() for future in futures]
  compile_wall_s = time.perf_counter() - compile_start
  print(f"compiled {len(steps)} steps in {compile_wall_s:.0f} s (in parallel)", flush=True)
  peer_results = peers.run(timeout_s=600) if peers else {"error": "torch / timm not installed"}
  print(f"torch peers: {peer_results}", flush=True)

  peak = peak_flops(jax.devices()[0])
  rows, extra, details, measured = [], [], [], {}
  for step, (row, setting, attention) in zip(steps, checks, strict=True):
    if isinstance(step, Failure):
      rows.append([f"{row} step", "", str(step), "", None])
      continue
    seconds = attempt(f"timing {row}", time_step, step, args.steps)
    if isinstance(seconds, Failure):
      rows.append([f"{row} step", setting_text(step), str(seconds), "", None])
      continue
    name = "_".join(filter(None, (setting, attention)))
    profile = attempt("profiling", profile_step, step, 2, keep, name)
    result, measured[row] = step_cells(step, seconds, profile, peak)
    if step.config.model.name == "vit":  # Shows whether cuDNN's attention is in the step or XLA's stood in.
      calls = step.compiled.as_text().count('custom_call_target="__cudnn$fmha')
      result += f"; cuDNN attention calls: {calls}"
    if not isinstance(profile, Failure):
      top = "; ".join(
        f"`{op}` x{count:g} ({scope}{'' if kernel == op else ', ' + kernel[:50]}) {_pct(share)}"
        for op, scope, kernel, count, share in profile["top"]
      )
      details.append(f"- {row}: kernel time {_fmt(profile['kernel s'] * 1e3)} ms/step; top ops: {top}")
    print(f"{row}: {result}", flush=True)
    rows.append([f"{row} step", setting_text(step), result, None, None])
    if setting == "simclr_resnet50_224":
      extra.append(attempt("census", census_row, step, 0 if args.tiny else 2**20))
      extra.append(attempt("saving", save_row, step))
    del step.state, step.compiled  # Free the device memory before the next step runs.
  _fill_baselines(rows, measured, peer_results)
  for name, goal in (("SimCLR ResNet-50", "views/s"), ("MAE ViT-B/16, cuDNN attention", "MFU")):
    if name in measured:
      value, target = measured[name][goal], SIMCLR_GOAL_VIEWS_PER_S if goal == "views/s" else VIT_GOAL_MFU
      shown = (
        (_fmt(value) + " views/s", f"goal {target:,.0f} views/s")
        if goal == "views/s"
        else (
          f"MFU {_pct(value)}",
          f"goal {_pct(target)} MFU",
        )
      )
      rows.append([f"{name.split(',')[0]} vs goal", "", *shown, ratio(value, target)])
  rows += [r if not isinstance(r, Failure) else [r.split(" failed")[0], "", str(r), "", None] for r in extra]
  return rows, details, {"compile s": compile_wall_s, "steps": len(steps)}


def census_row(step: Step, min_bytes: int) -> list:
  census, targets = hlo_census.census(step.compiled.as_text(), min_bytes)
  totals = collections.Counter()
  for counts in census.values():
    totals.update(counts)
  calls = ", ".join(f"{t} x{n}" for t, n in targets.most_common(4)) or "none"
  result = (
    f"f32 {_fmt(totals['f32 MiB'])} MiB / bf16 {_fmt(totals['bf16 MiB'])} MiB in {totals['buffers']} buffers >= "
    f"{min_bytes / 2**20:g} MiB, {totals['transposes']} transposes/copies; custom calls: {calls}"
  )
  row = ["HLO census of the SimCLR ResNet-50 step", setting_text(step), result, "bf16 buffers"]
  return row + [ratio(totals["f32 MiB"], totals["bf16 MiB"])]


def save_row(step: Step) -> list:
  saved = checkpoint_blocking(step)
  result = f"{_fmt(saved['blocking s'] * 1e3)} ms blocking, {_fmt(saved['write s'])} s until written"
  setting = f"SimCLR ResNet-50 train state, {saved['state MiB']:,.0f} MiB"
  return ["Checkpoint save blocking (async)", setting, result, f"goal {SAVE_GOAL_S * 1e3:.0f} ms"] + [
    saved["blocking s"] / SAVE_GOAL_S
  ]


def _fill_baselines(rows: list, measured: dict, peer_results: dict):
  """Each step row's baseline and ratio: the PyTorch peer (SimCLR, MAE), the SimCLR step (BYOL, same trunk), the
  cuDNN step (MAE with XLA's attention), or the ViT goal of 40% MFU."""

  def peer(name: str, label: str):
    result = peer_results.get(name)
    if result is None:
      return f"{label}: {peer_results.get('error', 'no result')}", None
    return f"{label}: {_fmt(result['views/s'])} views/s ({_fmt(result['step ms'])} ms/step)", result["views/s"]

  simclr = measured.get("SimCLR ResNet-50", {})
  for row in rows:
    name = row[0].removesuffix(" step")
    if name not in measured:
      continue
    numbers = measured[name]
    if name == "SimCLR ResNet-50":
      row[3], anchor = peer("simclr", "PyTorch (torchvision ResNet-50, channels_last, bf16, compiled)")
      row[4] = ratio(numbers["views/s"], anchor)
    elif name == "BYOL ResNet-50" and numbers["MFU"]:
      row[3], row[4] = "the SimCLR ResNet-50 step's MFU", ratio(numbers["MFU"], simclr.get("MFU"))
    elif name == "BYOL ResNet-50":  # No peak FLOP/s known (a CPU): views/s.
      row[3], row[4] = "the SimCLR ResNet-50 step's views/s", ratio(numbers["views/s"], simclr.get("views/s"))
    elif name.startswith("MAE ViT-B/16, cuDNN"):
      row[3], anchor = peer("mae", "PyTorch (timm ViT-B/16 MAE, fused attention, bf16, compiled)")
      row[4] = ratio(numbers["views/s"], anchor)
    elif name.startswith("MAE ViT-B/16, XLA"):
      cudnn = measured.get("MAE ViT-B/16, cuDNN attention", {})
      row[3], row[4] = "the cuDNN attention step", ratio(numbers["views/s"], cudnn.get("views/s"))
    else:
      row[3], row[4] = f"goal {_pct(VIT_GOAL_MFU)} MFU", ratio(numbers["MFU"], VIT_GOAL_MFU)


def attention_row(gpu: bool) -> list:
  if not gpu:
    return ["cuDNN vs XLA attention", "", "not run: cuDNN needs a GPU", "", None]
  diff = attention_equality()
  result = f"max abs difference: output {diff['output']:.3g}, gradients {diff['gradients']:.3g}"
  setting = "ViT-B/16 shapes [4, 197, 12, 64], bf16"
  return ["cuDNN vs XLA attention", setting, result, f"tolerance {ATTENTION_TOLERANCE}"] + [
    max(diff.values()) / ATTENTION_TOLERANCE
  ]


def nt_xent_table(tiny: bool) -> list:
  rows = []
  sizes = (256, 1024, 4096) if tiny else (8192, 65536, 1048576)
  for result in nt_xent_rows(sizes, 128, (1024, 4096), 40.0, 20.0):
    blockwise, dense, n = result["blockwise"], result["dense"], result["n"]
    timed = f"{_fmt(blockwise['ms'])} ms" if blockwise["ms"] else f"not run (~{_fmt(result['estimate ms'])} ms)"
    cells = [f"NT-Xent blockwise, 2N = {n:,}", f"dim 128, block {result['block']}, float32, forward + backward"]
    cells.append(f"{timed}, {_fmt(blockwise['temp GiB'])} GiB temporaries")
    dense_memory = "too large to compile" if dense["temp GiB"] is None else f"{_fmt(dense['temp GiB'])} GiB"
    if dense["ms"]:
      cells += [f"dense: {_fmt(dense['ms'])} ms, {dense_memory}", ratio(blockwise["ms"], dense["ms"])]
    elif n == sizes[1]:
      cells += [f"goal {NT_XENT_64K_GOAL_MS:.0f} ms (dense: {dense_memory}, not run)"]
      cells.append(ratio(blockwise["ms"], NT_XENT_64K_GOAL_MS))
    else:
      cells += [f"dense: {dense_memory}, not run", None]
    rows.append(cells)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tiny", action="store_true", help="Toy sizes in float32 (a CPU smoke run).")
  parser.add_argument("--batch_size", type=int, default=None, help="Images per step (default: each setting's).")
  parser.add_argument("--steps", type=int, default=10, help="Timed steps per train step.")
  parser.add_argument("--out", type=pathlib.Path, default=None, help="Folder for report.md and the profiles.")
  parser.add_argument("--no_torch", action="store_true", help="Skip the PyTorch peers.")
  parser.add_argument("--only", nargs="+", default=None, help="Only the step rows of these bench_step settings.")
  parser.add_argument("--commit", default=None, help="Commit to print (default: git's HEAD, if there is a .git).")
  args = parser.parse_args()
  started = time.perf_counter()
  dtype = "float32" if args.tiny else "bfloat16"
  batch_size = args.batch_size or (8 if args.tiny else None)
  keep = None
  if args.out:
    args.out.mkdir(parents=True, exist_ok=True)
    keep = pathlib.Path(tempfile.mkdtemp())
  gpu = jax.default_backend() == "gpu"
  checks = [c for c in STEP_CHECKS if not args.only or c[1] in args.only]
  peers = None
  if not args.no_torch and importlib.util.find_spec("torch") and importlib.util.find_spec("timm"):
    log = pathlib.Path(tempfile.mkdtemp()) / "torch_peers.log"
    peers = TorchPeers(batch_size or 256, 32 if args.tiny else 224, args.steps, args.tiny, log)

  rows, details, compiled = step_rows(checks, args, dtype, batch_size, gpu, keep, peers) if checks else ([], [], {})
  attention = attempt("cuDNN vs XLA attention", attention_row, gpu)
  rows.append(attention if not isinstance(attention, Failure) else ["cuDNN vs XLA attention", "", attention, "", None])
  nt_xent = attempt("NT-Xent", nt_xent_table, args.tiny)
  rows += nt_xent if not isinstance(nt_xent, Failure) else [["NT-Xent", "", nt_xent, "", None]]

  device = jax.devices()[0]
  header = f"device: {jax.device_count()} x {device.device_kind} (jax {jax.__version__}); date: "
  header += f"{datetime.date.today()}; commit: {args.commit or _commit()}; "
  if compiled:
    header += f"{compiled['steps']} steps compiled in parallel in {compiled['compile s']:.0f} s; "
  header += f"whole report {time.perf_counter() - started:.0f} s"
  if args.tiny:
    header += "; --tiny: each config's runlocal model at 32 px, batch 8, float32 (rows keep the full settings' names)"
  lines = [header, "", "| check | setting | result | baseline | ratio |", "| --- | --- | --- | --- | --- |"]
  lines += ["| " + " | ".join(c if isinstance(c, str) else _fmt(c) for c in row) + " |" for row in rows]
  lines += ["", "Largest ops by kernel time (from each step's profile):", *details]
  report = "\n".join(lines)
  print(report, flush=True)
  if args.out:
    (args.out / "report.md").write_text(report + "\n")
    for name in sorted({path.name.split(".")[0] for path in keep.iterdir()}):
      with tarfile.open(args.out / f"profile_{name}.tar.gz", "w:gz") as archive:
        for path in sorted(keep.glob(f"{name}.*")):
          archive.add(path, arcname=path.name)


if __name__ == "__main__":
  main()
