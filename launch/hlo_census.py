r"""Census of the compiled train step: what its buffers, layout changes and library calls are, per named scope.

  python -m launch.hlo_census --setting simclr_resnet50_224 --batch_size 64     # on the accelerator to inspect
  python -m launch.hlo_census --setting mae_vitb16_224 --min_mib 4

Reads the optimised HLO of one compile (no step is run). Every instruction outside fused computations is a buffer
the step materialises; those of at least --min_mib are summed by dtype and by the named scope of the train step
that produced them (augment, teacher, forward_backward, optimizer, guard; `train_step.py`), with the layout changes
(`transpose`, `copy`) among them counted, and every custom call's target listed (on GPUs: cuDNN convolutions,
fused attention, cuBLAS GEMMs). What to look for in a bf16 step: float32 buffers of activation size (an upcast
around BatchNorm or a loss), transposes next to convolutions, and unfused elementwise passes.
"""

import argparse
import collections
import re

import jax
import numpy as np

from launch.bench_step import SETTINGS, synthetic_setup

SCOPES = ("augment", "teacher", "forward_backward", "optimizer", "guard")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.-]+) = (.+?) ([\w-]+)\(")  # Name, shape (maybe a tuple), opcode.
_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")
_NAME = re.compile(r"^\s*(?:ROOT )?%([\w.-]+) = ")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_CALLED = re.compile(r"(?:calls|to_apply)=%([\w.-]+)")
_OP_NAME = re.compile(r'op_name="([^"]+)"')
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1, "f64": 8, "s64": 8}


def scope_of(op_name: str | None) -> str:
  """The train step's named scope an instruction came from, by its op_name metadata; "other" outside them."""
  return next((s for s in SCOPES if op_name and f"/{s}/" in op_name + "/"), "other")


def instruction_scopes(hlo_text: str) -> dict[str, str]:
  """{instruction name: scope} for every instruction of an HLO module's text (a profile's "hlo_op" names them)."""
  scopes = {}
  for line in hlo_text.splitlines():
    if (name := _NAME.match(line)) is not None:
      op_name = _OP_NAME.search(line)
      scopes[name.group(1)] = scope_of(op_name and op_name.group(1))
  return scopes


def census(hlo_text: str, min_bytes: int) -> tuple[dict, collections.Counter]:
  """({scope: {"f32 MiB", "bf16 MiB", "other MiB", "buffers", "transposes"}}, custom-call targets)."""
  rows = collections.defaultdict(lambda: collections.Counter())
  targets = collections.Counter()
  inlined = set(_CALLED.findall(hlo_text))  # Bodies of fusions and reductions: no buffers of their own.
  in_fusion = False
  for line in hlo_text.splitlines():
    if line.endswith("{") and not line.startswith(" "):  # A computation's header.
      in_fusion = line.split()[0 if not line.startswith("ENTRY") else 1].lstrip("%") in inlined
      continue
    match = _INSTRUCTION.match(line)
    if in_fusion or not match:
      continue
    name, shape, opcode = match.groups()
    if opcode == "custom-call" and (target := _TARGET.search(line)):
      targets[target.group(1)] += 1
    if opcode in ("parameter", "get-tuple-element", "bitcast", "constant", "tuple"):
      continue
    op_name = _OP_NAME.search(line)
    row = rows[scope_of(op_name and op_name.group(1))]
    for dtype, dims in _ARRAY.findall(shape):  # Each output of a tuple (multi-output fusions, library calls).
      size = int(np.prod([int(d) for d in dims.split(",") if d])) * _BYTES.get(dtype, 4)
      if size < min_bytes:
        continue
      row[f"{dtype if dtype in ('f32', 'bf16') else 'other'} MiB"] += size / 2**20
      row["buffers"] += 1
      row["transposes"] += opcode in ("transpose", "copy") or "transpose" in name
  return dict(rows), targets


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", choices=sorted(SETTINGS), default="simclr_resnet50_224")
  parser.add_argument("--batch_size", type=int, default=None)
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--min_mib", type=float, default=1.0, help="Smallest buffer counted.")
  args = parser.parse_args()
  config, trainer, batch, state = synthetic_setup(args.setting, args.batch_size, args.dtype)
  rows, targets = census(trainer.step.lower(state, batch).compile().as_text(), int(args.min_mib * 2**20))
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  print(f"{device} | {args.setting} {args.dtype} batch {config.batch_size} | buffers >= {args.min_mib} MiB")
  columns = ("f32 MiB", "bf16 MiB", "other MiB", "buffers", "transposes")
  print("scope | " + " | ".join(columns))
  for scope in (*SCOPES, "other"):
    if scope in rows:
      print(f"{scope} | " + " | ".join(f"{rows[scope][c]:.4g}" for c in columns))
  print("custom calls: " + (", ".join(f"{t} x{n}" for t, n in targets.most_common()) or "none"))


if __name__ == "__main__":
  main()
