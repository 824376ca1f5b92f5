"""Methods with a teacher, a queue, a centre, prototypes or a memory bank (BYOL, SimSiam, MoCo v2/v3, DINO, Barlow
Twins, VICReg, SwAV, DeepCluster-v2), text beside the images (CLIP, SigLIP), text alone (GPT, BERT, word2vec),
a pretext task's parts and labels (rotation, jigsaw, context prediction), an auto-encoder (the CVAE), a context
encoder's holes, CPC's patch grid, a colorizer's Lab targets, a PixelCNN's sub-pixels or a GAN's two players, on
the one train step: the risks of docs' method-state table, each a test. One compiled trainer per method and mesh is
shared by every test."""

import dataclasses
import functools
import importlib
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from compilations import compiled_functions
from ml_collections import ConfigDict

from ssljax import checkpoint, data, experiment, losses, optim, sharding, train_step
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, build_method, cosine_momentum, dino
from tests import tiny_tfds

METHODS = (
  "byol",
  "simsiam",
  "moco_v2",
  "moco_v3",
  "dino",
  "barlow_twins",
  "vicreg",
  "swav",
  "deepcluster_v2",
  "clip",
  "siglip",
  "gpt",
  "bert",
  "word2vec",
  "rotation",
  "jigsaw",
  "context_prediction",
  "autoencoder",
  "context_encoder",
  "cpc",
  "colorization",
  "pixelcnn",
  "gan",
  "cyclegan",
)
VARIANTS = {
  "autoencoder": "cvae",
  "pixelcnn": "conditional",
}  # The variant that exercises the most: sampled latents and the class.
TEXT_METHODS = ("gpt", "bert", "word2vec")
TEACHER_METHODS = ("byol", "moco_v2", "moco_v3", "dino")
TAU = 0.9
STEPS = 3


# Issues 24's and 26's methods run these tests under `pytest -m slow` only: the default run must stay within CI's 30
# minutes (their labels, grids, losses, pictures and, for the GANs, a whole step reproduced by hand are tested in
# the default run: tests/test_pretext.py, tests/test_autoencoder.py, tests/test_context_encoder.py,
# tests/test_cpc.py, tests/test_colorization.py, tests/test_pixelcnn.py, tests/test_gan.py, tests/test_cyclegan.py).
SLOW_METHODS = (
  "rotation",
  "jigsaw",
  "context_prediction",
  "autoencoder",
  "context_encoder",
  "cpc",
  "colorization",
  "pixelcnn",
  "gan",
  "cyclegan",
)


# These methods' shared-step tests (8 devices == 1, NaN batch, resume, teacher) also run under `-m slow` only:
# their state is made of pieces that other default tests compare, NaN-test and resume (SimSiam's, VICReg's and
# Barlow Twins': parameters, optimizer and BatchNorm statistics, as SimCLR's in tests/test_train.py and every
# method's below; BYOL's and MoCo v3's: an EMA teacher with its own BatchNorm, as MoCo v2's and DINO's; SigLIP's:
# two towers, as CLIP's), and their losses are compared on 8 devices and 1 in the losses' tests.
STATE_AS_ANOTHER_METHOD = ("simsiam", "vicreg", "barlow_twins", "byol", "moco_v3", "siglip")


def same_worker(names):
  """Parameters grouped by method: under `pytest -n 2 --dist loadgroup` (pytest.ini) the tests that share a
  method's cached runs (`_run`) go to one worker, which compiles them once."""
  slow = (*SLOW_METHODS, *STATE_AS_ANOTHER_METHOD)
  return [
    pytest.param(name, marks=[pytest.mark.xdist_group(name), *([pytest.mark.slow] if name in slow else [])])
    for name in names
  ]


def method_config(name: str, arg: str = "runlocal,train_only"):
  """The method's digits (text: python_docs; colorization: the tests' tiny colour dataset) smoke config with a
  constant teacher momentum of 0.9 (so one step moves it visibly)."""
  dataset = {"colorization": "cifar10", **dict.fromkeys(TEXT_METHODS, "python_docs")}.get(name, "digits")
  arg = ",".join(a for a in (VARIANTS.get(name), arg) if a)
  config = importlib.import_module(f"configs.{name}_{dataset}").get_config(arg)
  if name == "colorization":
    config.dataset.update(
      name=tiny_tfds.COLOURS_NAME, data_dir=tiny_tfds.prepared_colours(), image_size=tiny_tfds.COLOURS_SIDE
    )
  if "model" in config and config.model.name == "resnet":
    config.model.depth = 10  # Any ResNet shows what these tests check; ResNet-10's steps compile ~20% faster.
  for key in ("momentum", "final_momentum"):
    if key in config.get(name, {}):  # Methods with a teacher.
      config[name][key] = TAU
  sgd = ("clip", "siglip", "autoencoder", "context_encoder", "cpc", "colorization", "pixelcnn", "gan", "cyclegan")
  sgd += TEXT_METHODS
  if name in sgd:
    # AdamW turns gradients that are exactly 0 up to float noise (a ViT's attention key biases: softmax ignores
    # them) into +-lr steps whose sign differs between meshes; the meshes are compared under SGD (docs' table).
    config.optimizer = dict(
      name="sgd",
      # The auto-encoder's loss is a sum over pixels, ~100 x a mean's gradients; CycleGAN's generators' weighs its
      # L1 terms by 10 (at 0.1 its losses grow 5-fold in three steps).
      base_lr={"autoencoder": 1e-3, "cyclegan": 1e-3}.get(name, 0.1),
      lr_scaling="none",
      weight_decay=0.0,
      warmup_steps=0,
      momentum=0.9,
      nesterov=False,
    )
  return config


@dataclasses.dataclass
class Run:
  config: ConfigDict
  trainer: train_step.Trainer
  source: object
  batches: list  # The global batches of the steps.
  states: list  # Host copies of the state before the first step and after each step.
  metrics: list


@functools.cache
def _run(name: str, devices: int) -> Run:
  config = method_config(name)
  mesh = sharding.make_mesh((("data", devices),), jax.devices()[:devices])
  source = data.load_source(config.dataset, "train", config.get("text"))
  counts = data.token_counts(source, config)
  trainer = train_step.build_trainer(config, mesh, len(source), source.num_classes, counts, train_source=source)
  sampler = data.StepIndexedSampler(len(source), config.batch_size, config.seed)
  state = trainer.make_state(config.seed)
  run = Run(config, trainer, source, [], [jax.device_get(state)], [])
  for step, batch in data.train_batches(source, sampler, trainer.batch_sharding, 0, STEPS):
    run.batches.append(batch)
    with compiled_functions() as compiled:
      state, metrics = trainer.step(state, batch)
    assert step == 0 or not [f for f in compiled if "train_step" in f], compiled  # One compilation for all steps.
    run.states.append(jax.device_get(state))
    run.metrics.append(jax.device_get(metrics))
  return run


def _losses(metrics) -> list[float]:
  """The step's loss, or each player's ("discriminator/loss", "generator/loss")."""
  return [float(v) for k, v in sorted(metrics.items()) if k == "loss" or k.endswith("/loss")]


def _leaves(tree) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _teacher_forward(run: Run, step: int):
  """(the step's model inputs, the teacher's outputs for them), recomputed as the train step derives them."""
  state, method, model = run.states[step], run.trainer.method, run.trainer.model
  rng = jax.random.fold_in(state.rng, state.position)
  input_rng, model_rng = jax.random.split(rng)
  inputs = method.make_inputs(run.batches[step], input_rng)
  teacher, _ = model.apply(
    state.target, inputs, method="teach", mutable=["batch_stats"], rngs=train_step._rng_streams(model_rng)
  )
  return inputs, teacher, model_rng


@pytest.mark.parametrize("name", same_worker(METHODS))
def test_three_steps_on_8_devices_equal_1_device_for_the_loss_and_every_leaf_of_the_state(name):
  one, eight = _run(name, 1), _run(name, 8)
  losses_one = [_losses(m) for m in one.metrics]
  # Real updates (DeepCluster-v2's first epoch, steps 0 and 1, only fills its bank: loss 0).
  assert len(set(map(tuple, losses_one))) == (2 if name == "deepcluster_v2" else STEPS)
  np.testing.assert_allclose([_losses(m) for m in eight.metrics], losses_one, rtol=1e-4, atol=1e-7)
  expected, actual = _leaves(one.states[-1]), _leaves(eight.states[-1])
  assert expected.keys() == actual.keys()
  # Statistics and buffers (BatchNorm running averages, queue, centre) to float precision: a per-device statistic
  # would differ by its own size. Leaves made of gradients (params, teacher, optimizer state) to 2% of their norm:
  # BatchNorm scales and offsets have gradients that are sums of cancelling terms, and with each view through
  # BatchNorm on its own (32 rows at 1 x 1 px here) the 8 devices' float32 reduction order moves some of them by
  # ~1% (run in float64, 1 and 8 devices agree to 1e-6: float noise, not a collective). The absolute floor covers
  # the biases of Dense layers followed by BatchNorm, whose gradients are 0 up to float noise (~1e-7).
  for path, value in expected.items():
    if "batch_stats" in path or "buffers" in path:
      np.testing.assert_allclose(actual[path], value, rtol=2e-4, atol=2e-5, err_msg=path)
    else:
      # CycleGAN's generators end in a 1-channel convolution whose bias's gradient sums a sign-like L1 gradient
      # over every pixel of the batch: its momentum moves ~3% between the meshes.
      relative = 5e-2 if name == "cyclegan" and "['Conv_3']['bias']" in path else 2e-2
      error = np.linalg.norm((actual[path] - value).astype(np.float64))
      assert error <= relative * np.linalg.norm(value.astype(np.float64)) + 1e-5, (path, error)


@pytest.mark.parametrize("name", same_worker(TEACHER_METHODS))
def test_teacher_is_an_exact_ema_of_the_updated_params_with_its_own_batchnorm(name):
  """Also shows that no gradient reaches the teacher: any update beyond the EMA would break the equality (and the
  losses' own tests check a zero gradient to their targets)."""
  run = _run(name, 8)
  before, after = run.states[0], run.states[1]
  jax.tree.map(np.testing.assert_array_equal, before.target["params"], before.params)  # Starts as a copy.
  step_size = np.float32(1.0) - np.float32(TAU)
  expected = jax.tree.map(
    lambda new, old: step_size * new + (np.float32(1.0) - step_size) * old, after.params, before.target["params"]
  )
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7), after.target["params"], expected)
  assert float(run.metrics[0]["teacher_momentum"]) == pytest.approx(TAU)
  # The teacher's BatchNorm statistics are its own: they move every step and, once the weights differ (after
  # step 1 both ran the same weights), differ from the online network's.
  teacher_bn = _leaves(after.target["batch_stats"]["model"]["encoder"])
  online_bn = _leaves(run.states[-1].model_state["batch_stats"]["model"]["encoder"])
  last_teacher_bn = _leaves(run.states[-1].target["batch_stats"]["model"]["encoder"])
  initial_bn = _leaves(before.target["batch_stats"]["model"]["encoder"])
  moved = [p for p in teacher_bn if not np.array_equal(teacher_bn[p], initial_bn[p])]
  assert len(moved) == len(teacher_bn)
  assert all(not np.allclose(last_teacher_bn[p], online_bn[p]) for p in teacher_bn if "mean" in p)


@pytest.mark.xdist_group("moco_v2")
def test_moco_queue_advances_by_the_global_keys_after_the_loss_read_the_old_queue():
  run = _run("moco_v2", 8)
  queue_size, batch = run.config.moco_v2.queue_size, run.config.batch_size
  queues = [s.model_state["buffers"]["model"]["queue"] for s in run.states]
  pointers = [int(s.model_state["buffers"]["model"]["pointer"]) for s in run.states]
  assert pointers == [(i * batch) % queue_size for i in range(STEPS + 1)]  # The global batch, not a device's.
  inputs, teacher, model_rng = _teacher_forward(run, 0)
  keys = np.asarray(losses.l2_normalize(teacher["keys"]))
  np.testing.assert_allclose(queues[1][:batch], keys, rtol=1e-5, atol=1e-6)  # Normalised keys, in order.
  np.testing.assert_array_equal(queues[1][batch:], queues[0][batch:])
  # The step's loss is InfoNCE against the queue *before* the step.
  state, model = run.states[0], run.trainer.model
  outputs, _ = model.apply(
    {"params": state.params, **state.model_state},
    inputs,
    train=True,
    mutable=["batch_stats", "buffers"],
    rngs=train_step._rng_streams(model_rng),
    teacher=teacher,
  )
  np.testing.assert_array_equal(outputs["queue"], queues[0])
  expected = losses.info_nce(outputs["queries"], teacher["keys"], queues[0], run.config.moco_v2.temperature)
  np.testing.assert_allclose(run.metrics[0]["loss"], expected, rtol=1e-5)


@pytest.mark.xdist_group("moco_v2")
def test_moco_shuffle_bn_is_a_no_op_with_global_batchnorm(mesh8):
  """MoCo's shuffle-BN permutes the key batch across devices before the key encoder and un-permutes after; with
  BatchNorm over the global batch the keys come out exactly the same, so we do not shuffle."""
  run = _run("moco_v2", 8)
  inputs, teacher, _ = _teacher_forward(run, 0)
  permutation = np.random.default_rng(0).permutation(run.config.batch_size)
  shuffled = {**inputs, "key": jax.device_put(inputs["key"][permutation], run.trainer.batch_sharding)}
  teach = jax.jit(lambda v, x: run.trainer.model.apply(v, x, method="teach", mutable=["batch_stats"])[0])
  keys = teach(run.states[0].target, shuffled)["keys"]
  unshuffled = np.empty_like(keys)
  unshuffled[permutation] = keys
  np.testing.assert_allclose(unshuffled, teacher["keys"], rtol=1e-5, atol=1e-6)


@pytest.mark.xdist_group("dino")
def test_dino_centre_is_the_ema_of_the_global_mean_teacher_logits_and_last_layer_frozen_in_epoch_one():
  run = _run("dino", 8)
  _, teacher, _ = _teacher_forward(run, 0)
  centers = [s.model_state["buffers"]["model"]["center"] for s in run.states]
  momentum = run.config.dino.center_momentum
  expected = centers[0] * momentum + np.mean(teacher["logits"], axis=0, keepdims=True) * (1 - momentum)
  np.testing.assert_allclose(centers[1], expected, rtol=1e-5, atol=1e-7)
  assert not np.array_equal(centers[2], centers[1])
  # The head's last layer is frozen for its first 5 steps although it has weight decay; the rest moves.
  head_before, head_after = run.states[0].params["model"]["head"], run.states[-1].params["model"]["head"]
  np.testing.assert_array_equal(head_after["last_layer"], head_before["last_layer"])
  assert not np.array_equal(head_after["mlp"]["Dense_0"]["kernel"], head_before["mlp"]["Dense_0"]["kernel"])
  # Nor does its optimizer state move (the reference gives it no gradient): no momentum is stored up for release.
  opt_before, opt_after = _leaves(run.states[0].opt_state), _leaves(run.states[-1].opt_state)
  moments = [p for p in opt_after if (".mu" in p or ".nu" in p) and "['head']" in p]  # AdamW's.
  assert {p for p in moments if "last_layer" in p} and all(
    np.array_equal(opt_after[p], opt_before[p]) == ("last_layer" in p) for p in moments
  )
  # Evaluation reads the teacher.
  variables = train_step.eval_variables(run.states[-1], run.trainer.method)
  assert variables["params"] is run.states[-1].target["params"]
  assert variables["batch_stats"] is run.states[-1].target["batch_stats"]


@pytest.mark.parametrize("name", same_worker(METHODS))
def test_a_nan_batch_leaves_the_whole_state_unchanged(name):
  run = _run(name, 8)
  state = jax.device_put(run.states[-1], run.trainer.state_sharding)
  if name in TEXT_METHODS:  # Tokens cannot be NaN; an id beyond the vocabulary embeds as NaN (jnp.take's fill).
    batch = {**run.batches[-1], "text": run.batches[-1]["text"].at[0, 0].set(1_000_000)}
  else:
    batch = {**run.batches[-1], "image": run.batches[-1]["image"].at[0, 0, 0, 0].set(jnp.nan)}
  new_state, metrics = run.trainer.step(state, batch)
  assert int(metrics["nonfinite"]) == 1
  before, after = _leaves(run.states[-1]), _leaves(jax.device_get(new_state))
  for path, value in before.items():  # Teacher, queue, centre, BatchNorm and optimizer state included.
    if path not in (".step", ".position"):
      np.testing.assert_array_equal(after[path], value, err_msg=path)


@pytest.mark.parametrize("name", same_worker(METHODS))
def test_checkpoint_holds_teacher_and_buffers_and_resume_is_bit_exact(name, tmp_path):
  """Save after step 1, restore into a fresh abstract state, run steps 2 and 3: every leaf equals the
  uninterrupted run's bit for bit (schedules are functions of the checkpointed step)."""
  run = _run(name, 8)
  manager = checkpoint.make_manager(str(tmp_path))
  assert checkpoint.save(manager, jax.device_put(run.states[1], run.trainer.state_sharding))
  manager.wait_until_finished()
  abstract = checkpoint.abstract_like(jax.eval_shape(run.trainer.make_state, 0), run.trainer.state_sharding)
  state = checkpoint.restore_latest(manager, abstract)
  for step in (1, 2):
    state, metrics = run.trainer.step(state, run.batches[step])
    assert _losses(metrics) == _losses(run.metrics[step])
  expected, actual = _leaves(run.states[-1]), _leaves(jax.device_get(state))
  assert expected.keys() == actual.keys()
  for path, value in expected.items():
    np.testing.assert_array_equal(actual[path], value, err_msg=path)


# Whole runs through `experiment.train_and_evaluate` whose path another method's run already takes are under
# `-m slow` (the default run stays within CI's 30 minutes): SimSiam's and VICReg's are Barlow Twins' (one
# objective, no teacher, no buffers); BYOL's, MoCo v2's and v3's are DINO's (a teacher; DINO's also has multi-crop
# and a buffer), SwAV's and DeepCluster-v2's (multi-crop, prototypes, buffers) too; SigLIP's is CLIP's. The
# queue's, prototypes' and memory bank's steps are still compared on 8 devices and 1, resumed and NaN-tested above.
SAME_PATH_AS_ANOTHER_RUN = ("simsiam", "vicreg", "byol", "moco_v2", "moco_v3", "swav", "deepcluster_v2", "siglip")


@pytest.mark.parametrize(
  "name",
  [
    pytest.param(m, marks=pytest.mark.slow) if m in (*SLOW_METHODS, *SAME_PATH_AS_ANOTHER_RUN) else m
    # Colorization's own end-to-end run is in tests/test_colorization.py (its colour test data has no classes),
    # CycleGAN's in tests/test_cyclegan.py (no encoder: its evaluator is its translations).
    for m in (*[m for m in METHODS if m not in (*TEXT_METHODS, "colorization", "cyclegan")], "deepcluster")
  ],
)
def test_end_to_end_run_logs_collapse_metrics_and_evaluates(name, tmp_path):
  """The method's smoke config through `python -m ssljax.train`'s code path: training, checkpoints, the collapse
  metric every logged step (DINO: also the teacher's entropy), a linear probe and kNN on its features."""
  config = method_config(name, "runlocal")
  config.eval_baselines = ("raw_pixels",)
  config.evals = {
    "linear": dict(type="linear_probe", label_budgets=("all", 10), steps=50),
    "knn": dict(type="knn", ks=(20,)),
  }
  results = experiment.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = [row for row in rows if _losses(row)]
  assert [row["step"] for row in logged] == list(range(2, 13, 2))
  for row in logged:
    assert np.all(np.isfinite(_losses(row)))
    # The collapse metric: the embeddings' std, or a GAN's generated pixels' std across the batch (0 if collapsed).
    assert 0.0 < row["generator/sample_std" if name == "gan" else "embedding_std"] <= 1.0
    if name == "dino":
      assert 0.0 < row["teacher_entropy"] <= np.log(config.dino.out_dim) + 1e-4
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())[-1] == 12
  for key in ("linear_fast/ssl/10_per_class", "linear_fast/ssl/all", "knn/ssl/k20", "linear_fast/raw_pixels/all"):
    assert 0.1 < results[key] <= 1.0, (key, results)
  # Far above chance (0.1) after 12 steps on 8 px digits. DINO's AdamW warms up to 1.25e-4 over these 12 steps and
  # the auto-encoder runs SGD at 1e-3 here (`method_config`), so their networks are still close to random ones;
  # DeepCluster's first epochs (2 steps each) classify the clusters of a random network's features.
  # SimSiam's ResNet-10 (`method_config`) measured 0.25 after its 12 steps, the context encoder 0.26 (SGD here).
  weak = ("dino", "deepcluster", "autoencoder", "simsiam", "context_encoder")
  assert results["linear_fast/ssl/all"] > (0.15 if name in weak else 0.3)


def test_frozen_parameters_keep_their_adam_moments_while_the_count_advances():
  params = {"frozen": jnp.ones(3), "free": jnp.ones(3)}
  frozen = {"frozen": jnp.array(True), "free": jnp.array(False)}
  tx = optax.adamw(0.1, weight_decay=0.5)
  opt_state = tx.init(params)
  grads = {"frozen": jnp.full(3, 2.0), "free": jnp.full(3, 2.0)}
  _, new_state = tx.update(grads, opt_state, params)
  held = train_step.hold_frozen_state(new_state, opt_state, frozen)
  adam, new_adam = held[0], new_state[0]
  np.testing.assert_array_equal(adam.mu["frozen"], 0.0)
  np.testing.assert_array_equal(adam.nu["frozen"], 0.0)
  np.testing.assert_allclose(adam.mu["free"], 0.2, rtol=1e-6)
  np.testing.assert_array_equal(adam.mu["free"], new_adam.mu["free"])
  assert int(adam.count) == 1


@pytest.mark.parametrize("name", ("byol", "simsiam", "moco_v3", "barlow_twins", "vicreg"))
def test_each_view_goes_through_the_networks_on_its_own(name):
  """BatchNorm normalises each view by its own statistics, as the references' per-view forward passes; on
  asymmetric views these differ from statistics pooled over both (what a concatenated forward would use)."""
  method = build_method(method_config(name), BuildInfo(10, num_steps=12, steps_per_epoch=5))
  images = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))
  views = jnp.concatenate([images, 0.2 * images[::-1] + 0.7])  # The second view darker and flatter.
  variables = method.model.init(jax.random.key(1), views, train=True)
  train = functools.partial(method.model.apply, variables, mutable=["batch_stats"])

  def trunk(model, x, teacher=False):
    features = model.encoder(x, train=True)
    return model.projector(features, train=True) if teacher else features

  per_view = np.concatenate([train(view, method=trunk)[0] for view in jnp.split(views, 2)])
  pooled = train(views, method=trunk)[0]
  np.testing.assert_allclose(train(views, train=True)[0]["features"], per_view, rtol=1e-5, atol=1e-5)
  assert np.abs(pooled - per_view).max() > 0.05
  teacher_per_view = np.concatenate(
    [train(v, method=functools.partial(trunk, teacher=True))[0] for v in jnp.split(views, 2)]
  )
  np.testing.assert_allclose(train(views, method="teach")[0]["projections"], teacher_per_view, rtol=1e-5, atol=1e-5)


def test_schedules_are_functions_of_the_step():
  tau = cosine_momentum(0.996, 1.0, 100)
  np.testing.assert_allclose([float(tau(s)) for s in (0, 50, 100, 200)], [0.996, 0.998, 1.0, 1.0], rtol=1e-7)
  section = ConfigDict(
    dict(warmup_teacher_temperature=0.04, teacher_temperature=0.07, warmup_teacher_temperature_epochs=30)
  )
  temperatures = [float(dino.teacher_temperature(e * 10, section, steps_per_epoch=10)) for e in (0, 1, 15, 29, 30, 99)]
  np.testing.assert_allclose(temperatures, [0.04, 0.04 + 0.03 / 29, 0.04 + 0.03 * 15 / 29, 0.07, 0.07, 0.07], rtol=1e-6)
  assert float(dino.teacher_temperature(19, section, steps_per_epoch=10)) == pytest.approx(0.04 + 0.03 / 29)


def test_optimizer_group_keeps_the_predictor_learning_rate_constant():
  """SimSiam's fix_pred_lr: the predictor's SGD step is the peak lr at every step, the rest follows the cosine."""
  config = ConfigDict(
    dict(
      optimizer=dict(
        name="sgd", base_lr=0.1, lr_scaling="none", weight_decay=0.0, warmup_steps=0, momentum=0.0, nesterov=False
      )
    )
  )
  tx, schedule = optim.make_optimizer(config, 256, 100, {"predictor": {"schedule": "constant"}})
  params = {"encoder": {"kernel": jnp.ones((2, 2))}, "predictor": {"kernel": jnp.ones((2, 2))}}
  opt_state = tx.init(params)
  for _ in range(60):
    updates, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
  np.testing.assert_allclose(updates["predictor"]["kernel"], -0.1, rtol=1e-6)
  np.testing.assert_allclose(updates["encoder"]["kernel"], -schedule(59), rtol=1e-6)
  assert float(schedule(59)) < 0.06


def test_moco_v3_vit_freezes_exactly_the_patch_projection():
  """MoCo v3's ViT recipe freezes the random patch projection (kernel and bias) for the whole run and nothing else;
  the step zeroes the final updates of what `frozen` marks (bit-identical under weight decay: the DINO test)."""
  config = method_config("moco_v3")
  config.model = dict(name="vit", variant="Ti", width=32, depth=1, num_heads=2, patch_size=4, pool="cls")
  config.moco_v3.freeze_patch_embed = True
  method = build_method(config, BuildInfo(10, num_steps=12, steps_per_epoch=5))
  batch = {"image": jnp.zeros((2, 8, 8, 1)), "label": jnp.zeros((2,), jnp.int32)}
  inputs = method.make_inputs(batch, jax.random.key(0))
  init = jax.eval_shape(lambda: method.model.init({"params": jax.random.key(0)}, inputs, train=True))
  params = nn.meta.unbox(init)["params"]
  for step in (0, 10**6):
    frozen = _leaves(method.frozen(params, step))
    assert {path for path, value in frozen.items() if value} == {
      "['encoder']['patch_embed']['kernel']",
      "['encoder']['patch_embed']['bias']",
    }


def test_moco_v3_predictor_ends_in_batchnorm_without_affine_for_a_vit_only():
  """moco-v3 `builder.py`: MoCo_ViT's predictor is `_build_mlp(2, ...)` with last_bn=True (BatchNorm, affine=False);
  MoCo_ResNet's has last_bn=False."""
  vit = dict(name="vit", variant="S", width=32, depth=1, num_heads=2, patch_size=4, pool="cls")
  views = jnp.zeros((4, 8, 8, 1))
  for model, last_bn in ((vit, True), (None, False)):
    config = method_config("moco_v3")
    config.model = model or config.model
    method = build_method(config, BuildInfo(10, num_steps=12, steps_per_epoch=5))
    variables = nn.meta.unbox(jax.eval_shape(lambda m=method: m.model.init(jax.random.key(0), views, train=True)))
    assert sorted(variables["params"]["predictor"]) == ["BatchNorm_0", "Dense_0", "Dense_1"]
    assert sorted(variables["batch_stats"]["predictor"]) == ["BatchNorm_0", "BatchNorm_1"][: 1 + last_bn]


def test_dino_view_invariance_metrics_on_hand_made_logits():
  """Two images with one-hot logits (batch-centred: +-(0.5, -0.5, 0)): both crops alike -> correlation 1, other
  images -1, the same top prototype; the second crops swapped -> the reverse."""
  first = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  for second, expected in ((first, (1.0, -1.0, 1.0)), (first[::-1], (-1.0, 1.0, 0.0))):
    metrics = dino.view_invariance(jnp.concatenate([first, second]))
    actual = [
      float(metrics[k]) for k in ("teacher_view_correlation", "teacher_other_correlation", "teacher_view_agreement")
    ]
    np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.xdist_group("moco_v2")
def test_finetuning_takes_the_encoder_and_leaves_the_queue():
  """The fine-tune and random-init evaluators take the encoder's variables out of a model with buffers."""
  state = _run("moco_v2", 8).states[-1]
  encoder = train_step.encoder_variables({"params": state.params, **state.model_state})
  assert sorted(encoder) == ["batch_stats", "params"]
  assert encoder["params"] is state.params["model"]["encoder"]


def _model_tree(tree):
  """The method model's part of a variable tree (inside the online probe's wrapper)."""
  return tree["model"] if "model" in tree else tree


@pytest.mark.xdist_group("swav")
def test_swav_prototypes_stay_on_the_sphere_frozen_through_the_first_steps_with_their_optimizer_state():
  run = _run("swav", 8)
  assert run.config.swav.freeze_prototypes_steps == 1
  kernels = [_model_tree(state.params)["prototypes"]["kernel"] for state in run.states]
  for kernel in kernels:
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-6)
  np.testing.assert_allclose(kernels[1], kernels[0], rtol=1e-6, atol=1e-7)  # Step 0 frozen (renormalised only).
  assert np.abs(kernels[2] - kernels[1]).max() > 1e-4  # Step 1 moves them.
  momentum = [_leaves(state.opt_state) for state in run.states[:2]]
  held = [path for path in momentum[1] if "prototypes" in path]
  assert held and all(np.array_equal(momentum[1][p], momentum[0][p]) for p in held)


@pytest.mark.xdist_group("swav")
def test_swav_queue_holds_the_global_embeddings_and_joins_the_codes_once_full():
  """Queue of 128 at batch 64: steps 0 and 1 fill it (the pointer advances by the global batch), step 2 reads it
  for the Sinkhorn codes with the current prototypes; the loss equals `swav_loss` on the pre-step queue."""
  run = _run("swav", 8)
  method, model = run.trainer.method, run.trainer.model
  buffers = [_model_tree(state.model_state["buffers"]) for state in run.states]
  assert [int(b["pointer"]) for b in buffers] == [0, 64, 0, 64]
  np.testing.assert_array_equal(buffers[0]["queue"], 0.0)
  for step in range(STEPS):
    state = run.states[step]
    rng = jax.random.fold_in(state.rng, state.position)
    input_rng, model_rng = jax.random.split(rng)
    inputs = method.make_inputs(run.batches[step], input_rng)
    outputs, _ = model.apply(
      {"params": state.params, **state.model_state},
      inputs,
      train=True,
      mutable=list(state.model_state),
      rngs=train_step._rng_streams(model_rng),
    )
    start = int(buffers[step]["pointer"])
    by_crop = np.asarray(outputs["embeddings"]).reshape(-1, 64, outputs["embeddings"].shape[-1])
    np.testing.assert_allclose(buffers[step + 1]["queue"][:, start : start + 64], by_crop[:2], rtol=1e-5, atol=1e-5)
    prototypes = _model_tree(state.params)["prototypes"]["kernel"]
    queue_scores = jnp.asarray(buffers[step]["queue"]) @ prototypes
    loss = functools.partial(losses.swav_loss, outputs["scores"], 4, queue_scores=queue_scores)
    np.testing.assert_allclose(float(run.metrics[step]["loss"]), float(loss(use_queue=step >= 2)), rtol=1e-5)
    if step == 2:
      assert abs(float(loss(use_queue=False)) - float(loss(use_queue=True))) > 1e-4


def test_swav_config_errors_name_the_key():
  config = method_config("swav")
  info = BuildInfo(10, num_steps=12, steps_per_epoch=22)
  config.swav.queue_length = 100
  with pytest.raises(ConfigError, match=r"config.swav.queue_length: 100 is not a multiple of the batch size 64"):
    build_method(config, info)
  config.swav.queue_length = 0
  config.swav.crops_for_assign = (0, 4)
  with pytest.raises(ConfigError, match=r"config.swav.crops_for_assign: \(0, 4\) must be distinct crops among the 4"):
    build_method(config, info)


@pytest.mark.xdist_group("deepcluster_v2")
def test_deepcluster_v2_clusters_the_bank_at_the_epoch_end_and_trains_on_the_assignments():
  """Epochs of 2 steps (batch 480 of 1,437): steps 0 and 1 fill the bank with crops 0 and 1 (every update frozen,
  loss 0); the last step of the epoch runs the k-means: prototypes = unit centroids, every filled example assigned
  to its nearest, the rest -1; step 2's loss is the pseudo-label loss on those assignments; mid-epoch nothing is
  re-clustered, and the next epoch's end re-assigns."""
  run = _run("deepcluster_v2", 8)
  method, model = run.trainer.method, run.trainer.model
  buffers = [_model_tree(state.model_state["buffers"]) for state in run.states]
  params = [_model_tree(state.params) for state in run.states]
  np.testing.assert_array_equal(buffers[1]["assignments"], -1)  # Mid-epoch: nothing clustered yet.
  jax.tree.map(np.testing.assert_array_equal, params[1]["head"], params[0]["head"])  # The bank epoch is frozen.
  filled, memory, assignments = buffers[2]["filled"], buffers[2]["memory"], buffers[2]["assignments"]
  seen = np.concatenate([np.asarray(batch["index"]) for batch in run.batches[:2]])
  assert filled.sum() == 960 and filled[seen].all() and len(filled) == 2048  # Rows: 1,437 rounded up to 1,024s.
  for h in range(2):
    prototypes = params[2][f"prototypes{h}"]["kernel"]
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=0), 1.0, rtol=1e-5)
    nearest = np.argmax(memory[h] @ prototypes, axis=1)
    np.testing.assert_array_equal(assignments[h][filled], nearest[filled])
    np.testing.assert_array_equal(assignments[h][~filled], -1)
  assert float(run.metrics[0]["loss"]) == float(run.metrics[1]["loss"]) == 0.0
  state = run.states[2]
  rng = jax.random.fold_in(state.rng, state.position)
  inputs = method.make_inputs(run.batches[2], jax.random.split(rng)[0])
  outputs, _ = model.apply(
    {"params": state.params, **state.model_state},
    inputs,
    train=True,
    mutable=list(state.model_state),
    rngs=train_step._rng_streams(jax.random.split(rng)[1]),
  )
  targets = assignments[:, np.asarray(run.batches[2]["index"])]
  expected = np.mean([losses.pseudo_label_loss(outputs["scores"][h], targets[h], 4, 0.1) for h in range(2)])
  np.testing.assert_allclose(float(run.metrics[2]["loss"]), expected, rtol=1e-5)
  key = jax.random.key(5)
  unchanged = method.post_update(state.params, state.model_state, jnp.int32(2), key)
  jax.tree.map(np.testing.assert_array_equal, unchanged, (state.params, state.model_state))
  _, reclustered = method.post_update(state.params, state.model_state, jnp.int32(3), key)
  assert (_model_tree(reclustered["buffers"])["assignments"] != assignments).any()
