"""launch/accelerator_report.py: its toy-size run on the CPU (so that the report cannot rot between accelerator
sessions) and the pieces that read a profile and an optimised HLO module."""

import os
import pathlib
import subprocess
import sys

import pytest

from launch import accelerator_report, hlo_census

REPO = pathlib.Path(__file__).resolve().parent.parent

_HLO = """\
%fused_reduce (p: f32[8,3]) -> f32[8] {
  %p = f32[8,3]{1,0} parameter(0)
  ROOT %r = f32[8]{0} reduce(%p), dimensions={1}, to_apply=%add
}

ENTRY %main.1 (x: f32[1024,512]) -> f32[8] {
  %x = f32[1024,512]{1,0} parameter(0)
  %conv.1 = (bf16[1024,512]{1,0}, u8[4096]{0}) custom-call(%x), custom_call_target="__cudnn$convForward", \
metadata={op_name="jit(train_step)/forward_backward/conv"}
  %input_reduce_fusion.2 = (f32[1024,512]{1,0}, f32[8]{0}) fusion(%x), kind=kInput, calls=%fused_reduce, \
metadata={op_name="jit(train_step)/augment/reduce_sum"}
  %copy.3 = f32[512,1024]{0,1} copy(%x), metadata={op_name="jit(train_step)/optimizer/copy"}
  ROOT %t = f32[8]{0} get-tuple-element(%input_reduce_fusion.2), index=1
}
"""


def test_census_counts_every_output_of_tuples_and_library_calls():
  """Buffers of multi-output fusions and of library calls (tuple-shaped) count, fusion bodies do not."""
  rows, targets = hlo_census.census(_HLO, 2**20)
  assert targets == {"__cudnn$convForward": 1}
  assert rows["forward_backward"]["bf16 MiB"] == 1.0 and rows["forward_backward"]["buffers"] == 1
  assert rows["augment"]["f32 MiB"] == 2.0 and rows["augment"]["buffers"] == 1  # The [8] output is under 1 MiB.
  assert rows["optimizer"]["transposes"] == 1


def test_profile_summary_attributes_kernels_by_op_or_by_their_fusion_name():
  """A kernel whose "hlo_op" is an instruction takes its scope; inside a command buffer its own name (the
  fusion's, "." as "_") does; library kernels in a command buffer are their own group. Idle time is the wall time
  no kernel covers (overlaps counted once)."""
  events = [  # (hlo op, kernel, start s, duration s)
    ("conv.1", "sm90_xmma_fprop", 0.0, 0.4),
    ("command_buffer_7", "input_reduce_fusion_2", 0.3, 0.3),  # Overlaps the convolution by 0.1 s.
    ("command_buffer_7", "nvjet_gemm<bf16>", 0.7, 0.2),
    ("copy.3", "copy_3", 0.95, 0.1),
  ]
  summary = accelerator_report.profile_summary(events, _HLO, steps=1, wall_s=1.1)
  assert summary["kernel s"] == pytest.approx(1.0)
  assert summary["scopes"] == pytest.approx(
    {"forward_backward": 0.4, "augment": 0.3, "library (command buffer)": 0.2, "optimizer": 0.1}
  )
  assert summary["idle"] == pytest.approx(1 - 0.9 / 1.1)  # Busy: [0, 0.6], [0.7, 0.9], [0.95, 1.05].
  assert [entry[0] for entry in summary["top"]] == ["conv.1", "input_reduce_fusion_2", "nvjet_gemm", "copy.3"]


@pytest.mark.slow  # 3 min of compiles on 2 cores; run it before each accelerator session (`pytest -m slow`).
def test_tiny_report_runs_every_check_on_the_cpu(tmp_path):
  """The whole report at toy sizes: every train step compiles, runs and is profiled (its named scopes found), the
  census, checkpoint and NT-Xent rows have values, and report.md and one profile archive per step are written."""
  command = [sys.executable, "-m", "launch.accelerator_report", "--tiny", "--steps", "1", "--no_torch"]
  command += ["--out", str(tmp_path)]
  env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": ""}  # One CPU device: compiles in half the time.
  run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  report = (tmp_path / "report.md").read_text()
  rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines() if line.startswith("| ")}
  assert "failed" not in report, report
  for check, _, _ in accelerator_report.STEP_CHECKS:
    assert "views/s" in rows[f"{check} step"] and "forward_backward" in rows[f"{check} step"], report
  for check in ("BYOL ResNet-50", "MoCo v3 ViT-B/16"):
    assert "teacher" in rows[f"{check} step"], rows[f"{check} step"]  # The teacher's forward runs and is seen.
  assert "ms blocking" in rows["Checkpoint save blocking (async)"]
  assert "0 buffers" not in rows["HLO census of the SimCLR ResNet-50 step"]
  assert sum(line.startswith("| NT-Xent blockwise") for line in report.splitlines()) == 6  # 3 sizes, 2 blocks.
  profiles = sorted(path.name for path in tmp_path.glob("profile_*.tar.gz"))
  assert len(profiles) == len(accelerator_report.STEP_CHECKS), profiles
