"""Scale-out: FSDP / tensor-parallel ViT steps equal the 1-device step, checkpoints move between meshes, the
SimCLR's blockwise sharded loss equals the dense one, and two processes equal one."""

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import mae_digits
from ssljax import checkpoint, data, sharding, train_step
from ssljax.methods import simclr

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_DEVICE = (("data", 1),)


@functools.cache
def _vit_first_step(mesh_config):
  """One MAE step of a 1-block ViT (fast to compile) on `mesh_config`, shared by the tests below."""
  config = _mae_config()
  devices = jax.devices()[:1] if mesh_config == ONE_DEVICE else None
  return _first_step(config, mesh_config, devices)


def _first_step(config, mesh_config, devices=None):
  mesh = sharding.make_mesh(mesh_config, devices)
  source = data.load_source(config.dataset, "train")
  trainer = train_step.build_trainer(config, mesh, len(source), source.num_classes)
  state = trainer.make_state(config.seed)
  batch = data.global_batch(source.get(np.arange(config.batch_size)), trainer.batch_sharding)
  new_state, metrics = trainer.step(state, batch)
  return trainer, new_state, float(metrics["loss"])


def _mae_config():
  config = mae_digits.get_config("runlocal")
  config.update(batch_size=16)
  config.model.depth = 1
  config.mae.decoder_depth = 1
  return config


@pytest.mark.parametrize(
  "mesh_config", [(("data", 1), ("fsdp", 8), ("model", 1)), (("data", 2), ("fsdp", 2), ("model", 2))]
)
def test_vit_step_with_fsdp_and_tensor_parallel_equals_one_device(mesh_config):
  _, expected, expected_loss = _vit_first_step(ONE_DEVICE)
  trainer, state, loss = _vit_first_step(mesh_config)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    jax.device_get(state.params),
    jax.device_get(expected.params),
  )
  mesh = dict(mesh_config)
  encoder = state.params["model"]["encoder"]
  qkv = encoder["transformer"]["blocks_0"]["attn"]["qkv"]["kernel"]  # [embed, 3, heads, kv]
  spec = tuple(qkv.sharding.spec) + (None,) * (4 - len(qkv.sharding.spec))
  assert spec[0] == "fsdp" and spec[2] == ("model" if mesh["model"] > 1 else None), spec
  assert qkv.addressable_shards[0].data.size == qkv.size // (mesh["fsdp"] * mesh["model"])  # Really split.
  adam_mu = jax.tree.leaves(state.opt_state)
  assert any(getattr(x, "sharding", None) == qkv.sharding and x.shape == qkv.shape for x in adam_mu)


def test_checkpoint_written_on_8_devices_restores_on_1_and_back(tmp_path):
  config = _mae_config()
  trainer8, state8, _ = _vit_first_step((("data", 1), ("fsdp", 8), ("model", 1)))
  manager = checkpoint.make_manager(str(tmp_path / "eight"))
  checkpoint.save(manager, state8)
  manager.wait_until_finished()

  trainer1, state1, _ = _vit_first_step(ONE_DEVICE)
  shapes = jax.eval_shape(trainer1.make_state, config.seed)
  restored1 = checkpoint.restore_latest(manager, checkpoint.abstract_like(shapes, trainer1.state_sharding))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored1), jax.device_get(state8))
  assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(restored1))

  manager1 = checkpoint.make_manager(str(tmp_path / "one"))
  checkpoint.save(manager1, state1)
  manager1.wait_until_finished()
  restored8 = checkpoint.restore_latest(manager1, checkpoint.abstract_like(shapes, trainer8.state_sharding))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored8), jax.device_get(state1))
  jax.tree.map(lambda x, s: x.sharding == s or pytest.fail(f"{x.sharding} != {s}"), restored8, trainer8.state_sharding)


def test_simclr_loss_with_block_size_runs_sharded_and_equals_dense():
  """SimCLR's loss on projections sharded like the train step's: with `block_size` it runs in shard_map over the
  mesh's batch axes (value and gradient equal to the dense loss)."""
  mesh = sharding.make_mesh()
  projections = jax.device_put(
    jax.random.normal(jax.random.key(0), (128, 16)), jax.sharding.NamedSharding(mesh, jax.P(sharding.batch_axes(mesh)))
  )

  def loss(block_size):
    fn = functools.partial(
      simclr.contrastive_loss, batch=None, step=0, temperature=0.2, block_size=block_size, mesh=mesh
    )
    return jax.jit(jax.value_and_grad(lambda p: fn({"projections": p})[0]))(projections)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), loss(16), loss(None))
  assert "shard_map" in str(
    jax.make_jaxpr(lambda p: simclr.contrastive_loss({"projections": p}, None, 0, 0.2, 16, mesh)[0])(projections)
  )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(workdir, *flags, steps=4):
  command = [sys.executable, "-m", "ssljax.train", "--config=configs/simclr_digits.py:runlocal,train_only"]
  command += [f"--workdir={workdir}", f"--config.total_steps={steps}", "--config.log_every=1", *flags]
  env = {**os.environ, "XLA_FLAGS": ""}  # Each process sets its own device count (--cpu_devices).
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_processes(workdir, steps):
  port = _free_port()
  return [
    _train(
      workdir,
      f"--coordinator_address=127.0.0.1:{port}",
      "--num_processes=2",
      f"--process_id={i}",
      "--cpu_devices=4",
      steps=steps,
    )
    for i in range(2)
  ]


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {row["step"]: row["loss"] for row in map(json.loads, f) if "loss" in row}


@pytest.mark.slow  # Over a minute; the default run stays within CI's 30 minutes.
def test_two_processes_on_localhost_equal_one_process(tmp_path):
  """launch/local.sh: jax.distributed with CPU (gloo) collectives, 2 processes x 4 devices, each reading its half
  of every batch, give the losses of 1 process x 8 devices on the same global batches."""
  single = _train(tmp_path / "one", "--cpu_devices=8")
  assert single.wait(timeout=300) == 0, single.stderr.read()
  command = ["bash", "launch/local.sh", "2", "--config=configs/simclr_digits.py:runlocal,train_only", "--cpu_devices=4"]
  command += [f"--workdir={tmp_path / 'two'}", "--config.total_steps=4", "--config.log_every=1"]
  env = {**os.environ, "XLA_FLAGS": "", "PYTHON": sys.executable}
  launched = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert launched.returncode == 0, launched.stderr
  expected, got = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert sorted(got) == [1, 2, 3, 4]
  np.testing.assert_allclose([got[s] for s in sorted(got)], [expected[s] for s in sorted(got)], rtol=1e-5)
  assert (tmp_path / "two" / "checkpoints" / "4").is_dir()


@pytest.mark.slow  # ~50 s: two processes until a few steps are done.
def test_sigterm_to_one_host_stops_all_hosts_at_the_same_step(tmp_path):
  """JAX's preemption sync: the notice reaching process 1 makes both processes save the same step and exit 0."""
  runs = _two_processes(tmp_path, steps=200)
  deadline = time.time() + 300
  while not (tmp_path / "metrics.jsonl").exists() or max(_losses(tmp_path), default=0) < 3:
    assert all(run.poll() is None for run in runs) and time.time() < deadline
    time.sleep(0.1)
  runs[1].send_signal(signal.SIGTERM)
  outputs = [run.communicate(timeout=120) for run in runs]
  assert [run.returncode for run in runs] == [0, 0], outputs
  saved = re.findall(r"preempted: saved step (\d+)", outputs[0][1] + outputs[1][1])
  assert len(saved) == 2 and saved[0] == saved[1], saved
  assert (tmp_path / "checkpoints" / saved[0]).is_dir() and int(saved[0]) < 200
