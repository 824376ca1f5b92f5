"""CycleGAN: the authors' networks (parameter counts, PyTorch's transposed convolution, the PatchGAN's 70 x 70
receptive field, no batch statistics), the history pool against ImagePool's rules, the losses on golden values,
one step reproduced by hand (generators first against the old discriminators; the discriminators on the
generators' images from *before* their update), the unpaired data, CycleGAN's learning-rate schedule, the
evaluator's bookkeeping on an exact translation, and the one-line errors. 8 devices == 1, the NaN batch, bit-exact
resume and the end-to-end run: tests/test_methods.py (cyclegan is one of its METHODS, under `-m slow`)."""

import importlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cyclegan_digits
from ssljax import data, optim, sharding, train_step
from ssljax.config import ConfigError
from ssljax.config_checks import validate
from ssljax.evaluators import cyclegan_translations
from ssljax.methods import cyclegan
from ssljax.models import cyclegan as cyclegan_models
from ssljax.models.cyclegan import PatchDiscriminator, ResnetGenerator, patch_grid
from tests import players

LR = 0.05


def _config(arg="runlocal,train_only", **settings):
  config = cyclegan_digits.get_config(arg)
  config.cyclegan.update(settings)
  config.optimizer = dict(
    name="sgd", base_lr=LR, lr_scaling="none", weight_decay=0.0, warmup_steps=0, momentum=0.0, nesterov=False
  )
  config.optimizer.schedule = "constant"
  return config


def _trainer(config):
  mesh = sharding.make_mesh((("data", 1),), jax.devices()[:1])
  return train_step.build_trainer(config, mesh, 256, 10)


def _batch(size: int = 16, side: int = 16, seed: int = 0):
  rng = np.random.default_rng(seed)
  images = {k: jnp.asarray(rng.uniform(size=(size, side, side, 1)), jnp.float32) for k in ("image", "image_b")}
  labels = {k: jnp.asarray(rng.integers(0, 10, size), jnp.int32) for k in ("label", "label_b")}
  return {**images, **labels, "index": jnp.arange(size, dtype=jnp.int32)}


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_networks_have_the_authors_parameter_counts():
  """The authors' code prints 11.378 M parameters for `resnet_9blocks` (ngf 64, RGB) and 2.765 M for the `basic`
  70 x 70 PatchGAN (ndf 64, n_layers 3)."""
  images = jnp.zeros((1, 256, 256, 3))
  shapes = {
    name: jax.eval_shape(lambda m=module: m.init(jax.random.key(0), images))
    for name, module in (
      ("resnet_9blocks", ResnetGenerator(64, 9)),
      ("resnet_6blocks", ResnetGenerator(64, 6)),
      ("basic", PatchDiscriminator(64, 3)),
    )
  }
  assert {name: _count(tree) for name, tree in shapes.items()} == {
    "resnet_9blocks": 11_378_179,
    "resnet_6blocks": 7_837_699,
    "basic": 2_764_737,
  }
  assert patch_grid(256, 3) == 30 and patch_grid(16, 2) == 2


def test_upsampling_is_pytorch_s_transposed_convolution():
  """ConvTranspose2d(k=3, s=2, padding=1, output_padding=1): out[2 i - 1 + k] += in[i] w[k], 2x the side."""
  import flax.linen as nn

  layer = nn.ConvTranspose(3, (3, 3), (2, 2), ((1, 2), (1, 2)), use_bias=False, transpose_kernel=True)
  x = np.random.default_rng(0).normal(size=(1, 4, 4, 2)).astype(np.float32)
  variables = layer.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"])  # [ky, kx, out, in]
  expected = np.zeros((1, 8, 8, 3))
  for i in range(4):
    for j in range(4):
      for ky in range(3):
        for kx in range(3):
          y, z = 2 * i - 1 + ky, 2 * j - 1 + kx
          if 0 <= y < 8 and 0 <= z < 8:
            expected[0, y, z] += kernel[ky, kx] @ x[0, i, j]
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
  # The generator is built from the same layer: its output has the input's shape, in tanh's range.
  generator = ResnetGenerator(4, 1)
  images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
  out = generator.apply(generator.init(jax.random.key(0), images), images)
  assert out.shape == images.shape and float(jnp.abs(out).max()) < 1.0


def test_patch_discriminator_sees_70x70_patches(monkeypatch):
  """The support of one output's gradient with respect to the image is a dense 70 x 70 square (the paper's
  PatchGAN), whatever the width: the convolutions' receptive field, seen with instance normalisation (whose
  statistics mix every position of the image) replaced by the identity."""
  monkeypatch.setattr(cyclegan_models, "instance_norm", lambda x: x)
  discriminator = PatchDiscriminator(2, 3)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(1, 128, 128, 1)), jnp.float32)
  variables = discriminator.init(jax.random.key(0), images)
  assert discriminator.apply(variables, images).shape == (1, patch_grid(128, 3), patch_grid(128, 3))
  grad = jax.grad(lambda x: discriminator.apply(variables, x)[0, 7, 7])(images)
  rows, columns = np.nonzero(np.asarray(grad[0, ..., 0]))
  assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == (70, 70)
  assert len(rows) == 70 * 70


def test_networks_keep_no_batch_statistics():
  """Instance normalisation: an image's translation and judgement do not depend on the rest of the batch."""
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)), jnp.float32)
  for module in (ResnetGenerator(4, 1), PatchDiscriminator(4, 1)):
    variables = module.init(jax.random.key(0), images)
    assert list(variables) == ["params"]
    together = module.apply(variables, images)
    alone = jnp.concatenate([module.apply(variables, images[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def _image_pool(pool, count, images, key):
  """CycleGAN's `ImagePool.query`, one image at a time in Python, with the same random draws."""
  pool, returned, size = list(np.asarray(pool)), [], len(pool)
  for image, image_key in zip(np.asarray(images), jax.random.split(key, len(images)), strict=True):
    swap_key, slot_key = jax.random.split(image_key)
    if count < size:
      pool[count], count = image, count + 1
      returned.append(image)
    elif float(jax.random.uniform(swap_key)) > 0.5:
      slot = int(jax.random.randint(slot_key, (), 0, size))
      returned.append(pool[slot])
      pool[slot] = image
    else:
      returned.append(image)
  return np.stack(returned), np.stack(pool), count


def test_history_pool_follows_image_pool_and_loses_no_image():
  query = jax.jit(cyclegan.query_history)
  empty = jnp.zeros((3, 1))
  images = jnp.arange(1.0, 6.0).reshape(5, 1)
  returned, pool, count = query(empty, jnp.int32(0), images, jax.random.key(0))
  np.testing.assert_array_equal(returned[:3], images[:3])  # Filling: each image stored in turn and returned.
  np.testing.assert_array_equal(pool, np.asarray(_image_pool(empty, 0, images, jax.random.key(0))[1]))
  assert int(count) == 3
  # A full pool: half of the images swapped for stored ones, as ImagePool does, and none lost or duplicated.
  full = jnp.array([[10.0], [20.0], [30.0]])
  images = jnp.arange(1.0, 201.0).reshape(200, 1)
  returned, pool, count = query(full, jnp.int32(3), images, jax.random.key(1))
  expected = _image_pool(full, 3, images, jax.random.key(1))
  np.testing.assert_array_equal(returned, expected[0])
  np.testing.assert_array_equal(pool, expected[1])
  assert int(count) == 3
  swapped = np.mean(np.asarray(returned) != np.asarray(images))
  assert 0.4 < swapped < 0.6, swapped
  everything = np.sort(np.concatenate([np.ravel(returned), np.ravel(pool)]))
  np.testing.assert_array_equal(everything, np.sort(np.concatenate([np.ravel(images), np.ravel(full)])))
  # No pool: the images themselves.
  returned, _, _ = cyclegan.query_history(jnp.zeros((0, 1)), jnp.int32(0), images, jax.random.key(2))
  np.testing.assert_array_equal(returned, images)


def _outputs(shape=(2, 4, 4, 1), patches=(2, 2, 2)):
  full = lambda value, s=shape: jnp.full(s, value)  # noqa: E731
  return {
    "judged_fake_b": full(0.5, patches),  # (0.5 - 1)^2 = 0.25
    "judged_fake_a": full(-1.0, patches),  # (-1 - 1)^2 = 4
    "input_a": full(0.0),
    "input_b": full(1.0),
    "cycle_a": full(0.1),  # |0.1 - 0| = 0.1
    "cycle_b": full(0.7),  # |0.7 - 1| = 0.3
    "identity_b": full(0.8),  # |0.8 - 1| = 0.2
    "identity_a": full(-0.2),  # |-0.2 - 0| = 0.2
    "real_a": full(1.0, patches),  # (1 - 1)^2 = 0
    "history_a": full(0.5, patches),  # 0.5^2 = 0.25
    "real_b": full(0.0, patches),  # (0 - 1)^2 = 1
    "history_b": full(-1.0, patches),  # (-1)^2 = 1
  }


def test_losses_equal_the_paper_s_sums():
  """Generators: 0.25 + 4 + 10 (0.1 + 0.3) + 0.5 x 10 (0.2 + 0.2) = 10.25; without identity 8.25. Discriminators:
  (0 + 0.25) / 2 + (1 + 1) / 2 = 1.125."""
  loss = jax.jit(cyclegan.generators_loss, static_argnames=("cycle_weight", "identity_weight"))
  value, metrics = loss(_outputs(), None, 0, cycle_weight=10.0, identity_weight=0.5)
  assert float(value) == pytest.approx(10.25, rel=1e-6)
  assert {k: float(v) for k, v in metrics.items()} == pytest.approx(
    {"adversarial": 4.25, "cycle": 0.4, "identity": 0.4}
  )
  without = {k: v for k, v in _outputs().items() if not k.startswith("identity")}
  assert float(loss(without, None, 0, cycle_weight=10.0, identity_weight=0.0)[0]) == pytest.approx(8.25, rel=1e-6)
  value, metrics = jax.jit(cyclegan.discriminators_loss)(_outputs(), None, 0)
  assert float(value) == pytest.approx(1.125, rel=1e-6)
  assert float(metrics["fake_output_b"]) == -1.0 and float(metrics["real_output_a"]) == 1.0


def test_each_discriminator_judges_its_own_domain():
  """D_A's last convolution made constant 3 (zero kernel, bias 3): exactly the outputs on A images (real A, F(b),
  the A pool's answer) are 3, none of B's; and the generators' names: G = generators.b makes B images from A."""
  trainer = _trainer(_config())
  state = jax.device_get(trainer.make_state(0))
  params = jax.tree.map(np.array, state.params)
  last = params["discriminators"]["a"]["Conv_3"]
  last["kernel"][:], last["bias"][:] = 0.0, 3.0
  variables = {"params": params, **state.model_state}
  inputs = trainer.method.make_inputs(_batch(), jax.random.key(0))
  rngs = train_step._rng_streams(jax.random.key(1))
  outputs = {}
  for player in ("generators", "discriminators"):
    out, written = trainer.model.apply(variables, inputs, player=player, mutable=["buffers"], rngs=rngs)
    variables = {**variables, **written}
    outputs |= out
  for name in ("judged_fake_a", "real_a", "history_a"):
    np.testing.assert_array_equal(outputs[name], 3.0)
  for name in ("judged_fake_b", "real_b", "history_b"):
    assert not np.any(np.asarray(outputs[name]) == 3.0), name
  translated = trainer.model.apply(variables, _batch()["image"], "b", method="translate")
  np.testing.assert_allclose(translated * 2 - 1, outputs["fake_b"], atol=1e-6)


def test_one_step_generators_first_then_discriminators_on_the_old_generators_images():
  """By hand, plain SGD (p - lr g): the generators descend their loss against the discriminators as they were;
  their forward stores G(a) and F(b) of the generators *before* the update; the discriminators then descend
  theirs on the real images and on those stored images through the history pool."""
  trainer = _trainer(_config())
  model = trainer.model
  state0 = jax.device_get(trainer.make_state(0))
  batch = _batch()
  state1, metrics = trainer.step(jax.device_put(state0, trainer.state_sharding), batch)
  state1 = jax.device_get(state1)

  def player_grad(number, params, model_state):
    return players.player_grad(trainer, state0, number, 0, batch, params, model_state)

  def sgd(params, grad):
    return jax.tree.map(lambda p, g: p - LR * g, params, grad)

  g_loss, g_grad, buffers = player_grad(0, state0.params, state0.model_state)
  params = {**state0.params, "generators": sgd(state0.params["generators"], g_grad)}
  d_loss, d_grad, buffers = player_grad(1, params, buffers)
  params = {**params, "discriminators": sgd(state0.params["discriminators"], d_grad)}
  assert float(metrics["generators/loss"]) == pytest.approx(float(g_loss), rel=1e-5)
  assert float(metrics["discriminators/loss"]) == pytest.approx(float(d_loss), rel=1e-5)
  close = lambda e, a: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)  # noqa: E731
  jax.tree.map(close, params, state1.params)
  # Every kernel moved by far more than the tolerance. (A bias before an instance normalisation gets no gradient:
  # the normalisation subtracts it again. The authors' networks have these biases too.)
  moved = [
    float(np.abs(new - old).max())
    for (path, new), old in zip(
      jax.tree_util.tree_flatten_with_path(state1.params)[0], jax.tree.leaves(state0.params), strict=True
    )
    if "kernel" in jax.tree_util.keystr(path)
  ]
  assert min(moved) > 1e-4, moved
  jax.tree.map(close, buffers, state1.model_state)
  # The stored images are the generators' translations before their update.
  old = {"params": state0.params, **state0.model_state}
  for domain, source in (("b", "image"), ("a", "image_b")):
    translation = model.apply(old, batch[source], domain, method="translate")
    np.testing.assert_allclose((state1.model_state["buffers"][f"fake_{domain}"] + 1) / 2, translation, atol=1e-6)
  # Each pool (8 slots) is full, and every slot holds one of these stored images (the pool's rules themselves:
  # test_history_pool_follows_image_pool_and_loses_no_image).
  buffers1 = state1.model_state["buffers"]
  for domain in "ab":
    pool, fakes = np.asarray(buffers1[f"pool_{domain}"]), np.asarray(buffers1[f"fake_{domain}"])
    assert int(buffers1[f"pool_count_{domain}"]) == 8
    assert all(any(np.array_equal(slot, fake) for fake in fakes) for slot in pool)
  assert sorted(state1.opt_state) == ["discriminators", "generators"]


def test_unpaired_source_draws_domain_b_by_step_and_index():
  config = cyclegan_digits.get_config("runlocal")
  source = data.load_source(config.dataset, "train")
  assert isinstance(source, data.UnpairedSource) and len(source) == 1437 and source.num_classes == 10
  indices = np.arange(40)
  first, again = source.get_for_step(indices, 3), source.get_for_step(indices, 3)
  np.testing.assert_array_equal(first["image_b"], again["image_b"])  # After a resume: the same batch.
  part = source.get_for_step(indices[20:], 3)  # Another process's share: the same rows.
  np.testing.assert_array_equal(part["image_b"], first["image_b"][20:])
  later = source.get_for_step(indices, 4)
  assert not np.array_equal(later["image_b"], first["image_b"])  # A fresh B partner every step.
  np.testing.assert_array_equal(first["image"], source.source.get(indices)["image"])
  # Evaluation pairs test example i with domain B's example i: the same digit, dilated.
  test = data.load_source(config.dataset, "test").get(np.arange(10))
  np.testing.assert_array_equal(test["image_b"], data.dilate(test["image"]))
  np.testing.assert_array_equal(test["label_b"], test["label"])


def test_bold_digits_are_a_3x3_grey_dilation():
  image = np.zeros((1, 5, 5, 1), np.float32)
  image[0, 2, 2], image[0, 0, 4] = 0.5, 1.0
  expected = np.zeros((5, 5), np.float32)
  expected[1:4, 1:4] = 0.5
  expected[0:2, 3:5] = 1.0
  np.testing.assert_array_equal(data.dilate(image)[0, ..., 0], expected)


def test_linear_decay_schedule_is_cyclegan_s_policy():
  """Constant until `decay_start_epoch`, then linearly to 0 at the last step (here epoch 2 of 4, 2 steps each)."""
  opt = dict(name="adamw", base_lr=2.0, lr_scaling="none", weight_decay=0.0, warmup_steps=0, schedule="linear_decay")
  _, schedule = optim._single_optimizer(dict(opt, decay_start_epoch=2), 1, 8, 2.0)
  np.testing.assert_allclose([float(schedule(s)) for s in range(10)], [2, 2, 2, 2, 2, 1.5, 1, 0.5, 0, 0])
  # A run that ends before the decay would start (a smoke run of the 200-epoch recipe) keeps the base rate.
  _, schedule = optim._single_optimizer(dict(opt, decay_start_epoch=100), 1, 12, 1000.0)
  np.testing.assert_allclose([float(schedule(s)) for s in range(12)], [2.0] * 12)


def test_translations_evaluator_on_an_exact_translation(tmp_path):
  """A "model" whose G is the true dilation and whose F is the identity: G's error against the true B images is
  0, the domain-B classifier reads G(a) exactly as it reads the real B test images, F(G(a)) is off by what the
  dilation changed, and the baseline 'identity' columns are the untranslated images' errors."""
  from PIL import Image

  config = cyclegan_digits.get_config("")
  dilate = lambda x: jax.lax.reduce_window(x, 0.0, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")  # noqa: E731
  mesh = sharding.make_mesh((("data", 1),), jax.devices()[:1])
  test = data.load_source(config.dataset, "test")
  context = types.SimpleNamespace(
    config=config,
    model=types.SimpleNamespace(apply=lambda v, x, to, method: dilate(x) if to == "b" else x),
    variables={},
    train_source=data.load_source(config.dataset, "train"),
    test_source=test,
    batch_sharding=sharding.batch_sharding(mesh),
    workdir=str(tmp_path),
    writer=None,
  )
  results = cyclegan_translations.run(context, num_images=4, paired_test=True)
  images = test.get(np.arange(len(test)))
  untranslated = np.abs(images["image"] - images["image_b"]).mean()
  key = "cyclegan_translations/{}/{}".format
  assert results[key("ssl", "a_to_b_l1")] == pytest.approx(0.0, abs=1e-7)
  assert results[key("untranslated", "a_to_b_l1")] == pytest.approx(untranslated, rel=1e-5)
  assert results[key("ssl", "cycle_l1_a")] == pytest.approx(untranslated, rel=1e-5)
  assert results[key("ssl", "b_to_a_l1")] == pytest.approx(untranslated, rel=1e-5)
  assert results[key("ssl", "a_to_b_classifier_accuracy")] == results[key("real_test", "a_to_b_classifier_accuracy")]
  assert results[key("real_test", "a_to_b_classifier_accuracy")] > 0.85
  assert results[key("untranslated", "a_to_b_classifier_accuracy")] < results[key("ssl", "a_to_b_classifier_accuracy")]
  # 8 rows (a, G(a), F(G(a)), true b; b, F(b), G(F(b)), true a) of 4 framed 16 px tiles, zoomed x3.
  picture = np.asarray(Image.open(tmp_path / "cyclegan_translations.png"))
  assert picture.shape[:2] == (8 * 18 * 3, 4 * 18 * 3)


@pytest.mark.parametrize("name", ["cyclegan_digits", "cyclegan_horse2zebra"])
def test_configs_follow_the_paper(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert dict(config.optimizer) == {
    "name": "adamw",
    "base_lr": 2e-4,
    "lr_scaling": "none",
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "schedule": "linear_decay",
    "decay_start_epoch": config.epochs / 2,
    "b1": 0.5,
  }
  settings = config.cyclegan
  assert (settings.cycle_weight, settings.identity_weight, settings.pool_size) == (10.0, 0.5, 50)
  assert not config.online_probe and config.dataset.domain_b.name
  if name == "cyclegan_horse2zebra":
    assert (settings.generator_width, settings.residual_blocks, settings.discriminator_width) == (64, 9, 64)
    assert (settings.discriminator_layers, settings.flip, config.batch_size, config.epochs) == (3, True, 1, 200)
    assert (config.dataset.train_split, config.dataset.domain_b.train_split) == ("trainA", "trainB")
    assert (config.dataset.image_size, config.dataset.channels) == (256, 3)


def test_bad_cyclegan_settings_are_one_line_errors():
  config = _config()
  del config.dataset["domain_b"]
  with pytest.raises(ConfigError, match="config.dataset.domain_b: 'cyclegan' translates between two domains"):
    validate(config)
  simclr = cyclegan_digits.simclr_digits.get_config("runlocal")
  simclr.dataset.domain_b = dict(name="digits_bold", train_split="train", test_split="test")
  with pytest.raises(ConfigError, match="config.dataset.domain_b: 'simclr' reads one domain"):
    validate(simclr)
  with pytest.raises(ConfigError, match="config.dataset.host_crops: not with a second domain"):
    validate(players.with_updates(_config(), **{"dataset.host_crops": True, "dataset.name": "folder"}))
  with pytest.raises(ConfigError, match="config.cyclegan.discriminator_layers: 3 stride-2 layers leave no patch"):
    _trainer(_config(discriminator_layers=3))
  with pytest.raises(ConfigError, match="config.dataset.image_size: 10 is not a multiple of 4"):
    _trainer(players.with_updates(_config(), **{"dataset.image_size": 10}))
  with pytest.raises(ConfigError, match="config.cyclegan.cycle_weight: -1.0 must be at least 0"):
    _trainer(_config(cycle_weight=-1.0))
  config = _config("runlocal")
  config.evals.linear = dict(type="linear_probe", label_budgets=(10,), steps=10, seed=0)
  with pytest.raises(ConfigError, match="config.evals.linear: linear_probe reads an encoder's features"):
    _trainer(config)
  with pytest.raises(ConfigError, match="config.eval_baselines: CycleGAN has no features"):
    _trainer(players.with_updates(_config(), eval_baselines=("raw_pixels",)))
  simclr = cyclegan_digits.simclr_digits.get_config("runlocal")
  simclr.evals = {"translations": dict(type="cyclegan_translations")}
  with pytest.raises(ConfigError, match="config.evals.translations: cyclegan_translations needs method 'cyclegan'"):
    validate(simclr)
  config = _config()
  config.optimizer.schedule = "constant"
  config.optimizer.decay_start_epoch = 5
  with pytest.raises(ConfigError, match="config.optimizer.decay_start_epoch: set it with schedule 'linear_decay'"):
    validate(config)
  config.optimizer.schedule = "linear_decay"
  config.optimizer.decay_start_epoch = -1
  with pytest.raises(ConfigError, match="config.optimizer.decay_start_epoch: -1 must be at least 0"):
    validate(config)
  config.optimizer.decay_start_epoch = 5
  config.optimizer.warmup_steps = 10
  with pytest.raises(ConfigError, match="config.optimizer.schedule: 'linear_decay' has no warmup"):
    validate(config)
  with pytest.raises(ConfigError, match="config.online_probe"):
    _trainer(players.with_updates(_config(), online_probe=True))


def test_end_to_end_run_trains_checkpoints_and_writes_its_translations(tmp_path):
  """The smoke config through `python -m ssljax.train`'s code path: finite player losses every logged step, the
  history pool in the checkpoint, the translations evaluator's numbers and picture."""
  import json

  from ssljax import checkpoint, experiment

  config = cyclegan_digits.get_config("runlocal")
  results = experiment.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = [row for row in rows if "generators/loss" in row]
  assert [row["step"] for row in logged] == list(range(2, 13, 2))
  assert all(np.isfinite(row["generators/loss"]) and np.isfinite(row["discriminators/loss"]) for row in logged)
  manager = checkpoint.make_manager(str(tmp_path), read_only=True)
  assert manager.latest_step() == 12
  assert (tmp_path / "cyclegan_translations.png").exists()
  test = data.load_source(config.dataset, "test")
  images = test.get(np.arange(len(test)))
  untranslated = float(np.abs(images["image"] - images["image_b"]).mean())
  assert results["cyclegan_translations/untranslated/a_to_b_l1"] == pytest.approx(untranslated, rel=1e-5)
  assert results["cyclegan_translations/real_test/b_to_a_classifier_accuracy"] > 0.8
  for key in ("ssl/cycle_l1_a", "ssl/cycle_l1_b", "ssl/a_to_b_l1", "ssl/b_to_a_l1", "ssl/a_to_b_classifier_accuracy"):
    assert np.isfinite(results[f"cyclegan_translations/{key}"]), (key, results)
