"""Gated PixelCNN: masks on golden values, causality of a layer and of the whole network shown by gradients (no
blind spot), the loss in bits per dimension, the sampler's raster order, and a short run whose held-out likelihood
beats the uniform distribution, with the independent-pixel baseline checked against NumPy. The shared step's 8 == 1
/ NaN / resume tests: tests/test_methods.py and tests/test_reliability.py under `pytest -m slow`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import pixelcnn_digits
from ssljax import data, experiment
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, build_method, pixelcnn
from ssljax.models.pixelcnn import GatedLayer, GatedPixelCNN, channel_groups, group_mask, sample


def test_channel_group_masks_golden():
  groups = channel_groups(6, 3)
  np.testing.assert_array_equal(groups, [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(channel_groups(12, 3, period=6), [0, 0, 1, 1, 2, 2] * 2)  # A gate's two halves.
  rgb = np.arange(3)
  np.testing.assert_array_equal(group_mask(rgb, groups, "A"), [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0] * 6])
  np.testing.assert_array_equal(group_mask(rgb, groups, "B"), [[1] * 6, [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])


def _order(height, width, channels):
  """[H, W, C]: each sub-pixel's place in the generation order (raster, then channel)."""
  return np.arange(height * width * channels).reshape(height, width, channels)


def _dependence(fn, shape, seeds=4):
  """|d fn(x)[i, j, c] / d x[i', j', c']| > 0 at any of `seeds` random inputs, bool [H, W, C, H, W, C] (several
  inputs: at one, a ReLU can be off for every unit on a path that exists)."""
  jacobian = jax.jit(jax.jacrev(lambda x: fn(x[None])[0]))
  inputs = jax.random.uniform(jax.random.key(0), (seeds, *shape), minval=-1, maxval=1)
  return np.any([np.abs(np.asarray(jacobian(x))) > 0 for x in inputs], axis=0)


@pytest.mark.parametrize("channels, first_kernel", [(1, 7), (3, 5)])
def test_the_network_reads_only_earlier_sub_pixels_and_every_one_in_its_field(channels, first_kernel):
  """Output (i, j, c) has zero gradient on every input at or after (i, j, c) in generation order, and non-zero
  gradient on the pixels just before it, including up and to the right (the original PixelCNN's blind spot)."""
  shape = (6, 6, channels)
  model = GatedPixelCNN(features=24, num_layers=3, first_kernel=first_kernel, kernel=3, channels=channels)
  variables = model.init(jax.random.key(1), jnp.zeros((1, *shape), jnp.int32))
  # The float image in [0, 255] goes through the same scaling as sub-pixel values.
  depends = _dependence(lambda x: model.apply(variables, (x + 1) * 127.5)[0].sum(-1), shape)
  order = _order(*shape)
  later = order[None, None, None] >= order[..., None, None, None]  # [out..., in...]: input at or after output.
  assert not np.any(depends & later)
  for i, j, di, dj in [(3, 2, di, dj) for di, dj in ((0, -1), (-1, 0), (-1, 1), (-1, -1), (-2, 2), (-1, 3))] + [
    (4, 3, di, dj) for di, dj in ((0, -1), (-1, 0), (-1, 1), (-2, 2))
  ]:
    for c in range(channels):
      assert depends[i, j, c, i + di, j + dj].any(), (i, j, c, di, dj)
  if channels == 3:  # Blue reads the current pixel's red and green; red reads neither.
    assert depends[3, 3, 2, 3, 3, 0] and depends[3, 3, 2, 3, 3, 1] and not depends[3, 3, 0, 3, 3].any()


def test_a_super_resolution_network_reads_the_low_resolution_image_everywhere_and_the_image_causally():
  shape, factor = (6, 6, 1), 2
  model = GatedPixelCNN(features=24, num_layers=3, first_kernel=5, kernel=3, channels=1, low_res_factor=factor)
  low_res = jax.random.uniform(jax.random.key(5), (1, 3, 3, 1))
  variables = model.init(jax.random.key(1), jnp.zeros((1, *shape), jnp.int32), None, low_res)
  depends = _dependence(lambda x: model.apply(variables, (x + 1) * 127.5, None, low_res)[0].sum(-1), shape)
  order = _order(*shape)
  assert not np.any(depends & (order[None, None, None] >= order[..., None, None, None]))
  on_low_res = jax.jacrev(lambda s: model.apply(variables, jnp.zeros((1, *shape)), None, s)[0].sum(-1)[0, 0, 0, 0])
  gradient = np.abs(np.asarray(on_low_res(low_res)))[0, ..., 0]  # [3, 3]: the first pixel reads its own block.
  assert gradient[0, 0] > 0 and not gradient[1:].any()
  on_low_res = jax.jacrev(lambda s: model.apply(variables, jnp.zeros((1, *shape)), None, s)[0].sum(-1)[0, 0, 5, 0])
  gradient = np.abs(np.asarray(on_low_res(low_res)))[0, ..., 0]  # Pixel (0, 5): its block (0, 2), row 0 only.
  assert gradient[0, 2] > 0 and not gradient[1:].any()


@pytest.mark.parametrize("mask_type, features", [("A", 3), ("A", 6), ("B", 3), ("B", 6)])
def test_one_layer_reads_the_current_pixel_as_its_mask_says(mask_type, features):
  """A single gated layer's horizontal output: feature o at (i, j) reads the current pixel's input features of a
  group before its own (mask A: the image's channels) or up to its own (mask B: the previous layer's features), and
  never a later pixel."""
  channels = 3
  inputs = channels if mask_type == "A" else features
  shape = (5, 5, inputs)
  layer = GatedLayer(features=features, kernel_size=3, channels=channels, mask_type=mask_type)
  x = jnp.zeros((1, *shape))
  variables = layer.init(jax.random.key(0), x, x, None)
  depends = _dependence(lambda x: layer.apply(variables, x, x, None)[1], shape)
  pixel = np.arange(25).reshape(5, 5, 1)  # Each pixel's place in raster order.
  assert not np.any(depends & (pixel[None, None, None] > pixel[..., None, None, None]))
  current = depends[2, 2, :, 2, 2, :]  # [output feature, input feature]
  expected = group_mask(channel_groups(inputs, channels), channel_groups(features, channels), mask_type).T
  if mask_type == "B":  # The residual adds each input feature to the same output feature.
    expected = expected + np.eye(features)
  np.testing.assert_array_equal(current, expected.astype(bool))


def test_the_loss_is_the_mean_nll_and_bits_per_dim():
  targets = jnp.array([[[[0], [255]]]], jnp.int32)
  outputs = {"logits": jnp.zeros((1, 1, 2, 1, 256)), "targets": targets, "features": jnp.ones((1, 4))}
  batch = {"image": jnp.zeros((1, 1, 2, 1))}
  loss, metrics = pixelcnn.pixelcnn_loss(outputs, batch, 0)
  np.testing.assert_allclose(loss, np.log(256), rtol=1e-6)
  np.testing.assert_allclose(metrics["bits_per_dim"], 8.0, rtol=1e-6)  # Uniform: 8 bits.
  sure = outputs | {"logits": jax.nn.one_hot(targets, 256) * 50.0}
  assert float(pixelcnn.pixelcnn_loss(sure, batch, 0)[0]) < 1e-10
  assert np.isnan(pixelcnn.pixelcnn_loss(outputs, {"image": batch["image"].at[0, 0, 1, 0].set(jnp.nan)}, 0)[0])
  np.testing.assert_array_equal(pixelcnn.quantize(jnp.array([0.0, 0.5, 1.0, 1.2])), [0, 128, 255, 255])


def test_the_sampler_draws_in_raster_order_from_what_it_drew():
  """A 'model' whose every sub-pixel is the previous one + 1 (certain): the samples are 0, 1, 2, ... in raster and
  channel order, which needs each draw to see the canvas drawn before it."""

  def logits_fn(canvas):
    flat = canvas.reshape(canvas.shape[0], -1)
    previous = jnp.concatenate([jnp.full((canvas.shape[0], 1), -1), flat[:, :-1]], axis=1).reshape(canvas.shape)
    return jax.nn.one_hot(previous + 1, 256) * 100.0

  drawn = jax.jit(lambda key: sample(logits_fn, (2, 3, 4, 2), key))(jax.random.key(0))
  np.testing.assert_array_equal(drawn, np.broadcast_to(np.arange(24).reshape(3, 4, 2), (2, 3, 4, 2)))


def test_the_sampler_is_the_eager_loop_of_its_draws_and_random():
  """On a small random network the jitted sampler equals a Python loop drawing each sub-pixel with the same key
  (fold_in of the position); with uniform logits, rows and positions differ."""
  shape = (2, 3, 3, 1)
  model = GatedPixelCNN(features=8, num_layers=2, first_kernel=3, kernel=3, channels=1)
  variables = model.init(jax.random.key(0), jnp.zeros(shape, jnp.int32))
  logits_fn = lambda images: model.apply(variables, images)[0]  # noqa: E731
  key = jax.random.key(7)
  drawn = np.asarray(jax.jit(lambda k: sample(logits_fn, shape, k))(key))
  canvas = np.zeros(shape, np.int32)
  for position in range(9):
    i, j = divmod(position, 3)
    logits = logits_fn(jnp.asarray(canvas))[:, i : i + 1, j : j + 1, 0:1]
    canvas[:, i, j, 0] = np.asarray(jax.random.categorical(jax.random.fold_in(key, position), logits))[:, 0, 0, 0]
  np.testing.assert_array_equal(drawn, canvas)
  uniform = np.asarray(sample(lambda images: jnp.zeros((*images.shape, 256)), (4, 4, 4, 1), key))
  assert len({row.tobytes() for row in uniform}) == 4 and len(np.unique(uniform)) > 30


def test_bad_settings_are_one_line_errors_naming_the_key():
  config = pixelcnn_digits.get_config("runlocal")
  config.pixelcnn.kernel = 4
  with pytest.raises(ConfigError, match="config.pixelcnn.kernel: 4 is invalid"):
    build_method(config, BuildInfo(10))
  config = pixelcnn_digits.get_config("runlocal,conditional")
  assert not config.online_probe  # Its training features see the label.
  with pytest.raises(ConfigError, match="config.pixelcnn.conditional: True is invalid"):
    build_method(config, BuildInfo(0))
  config = pixelcnn_digits.get_config("runlocal")
  config.evals.finetune = dict(type="finetune")
  with pytest.raises(ConfigError, match="config.evals.finetune: finetune trains the encoder on images"):
    build_method(config, BuildInfo(10))


# 35 s from a cold compilation cache: under -m slow, for CI's 30 minutes (causality and sampling are tested above).
@pytest.mark.slow
def test_a_short_run_beats_the_uniform_likelihood_and_samples(tmp_path):
  """The smoke config (class-conditional) trained 100 steps on 8 px digits: held-out bits per dimension of log p(x)
  (marginal over the classes) below the independent-pixel model's (uniform: 8) and at least log p(x | label)'s,
  that baseline equal to NumPy's on the same splits, samples written."""
  config = pixelcnn_digits.get_config("runlocal,conditional")
  config.total_steps = 100
  config.optimizer.base_lr = 1e-2
  config.eval_baselines = ()
  config.evals = {"likelihood": {"type": "likelihood"}, "samples": {"type": "pixelcnn_samples", "num_images": 10}}
  results = experiment.train_and_evaluate(config, str(tmp_path))
  assert results["likelihood/ssl/bits_per_dim"] < results["likelihood/independent_pixels/bits_per_dim"], results
  # p(x) = sum_y p(x | y) p(y) >= p(x | y*) p(y*): at most -log2 p(y*) (~log2 10; no class is under 9% of the
  # training digits) over the 64 dimensions above the conditional.
  gap = results["likelihood/ssl/bits_per_dim"] - results["likelihood/ssl_given_label/bits_per_dim"]
  assert gap <= -np.log2(0.09) / 64, results
  values = {
    split: np.round(data.load_source(config.dataset, split).images * 255).astype(int)[..., 0]
    for split in ("train", "test")
  }
  counts = np.stack([(values["train"] == v).sum(0) for v in range(256)], -1)  # [H, W, 256]
  best = min(
    -np.mean(
      np.log(
        ((counts + a) / (counts.sum(-1, keepdims=True) + 256 * a))[
          np.arange(8)[:, None], np.arange(8)[None], values["test"]
        ]
      )
    )
    for a in (1e-3, 1e-2, 0.1, 1.0)
  )
  np.testing.assert_allclose(results["likelihood/independent_pixels/bits_per_dim"], best / np.log(2), rtol=1e-6)
  assert (tmp_path / "pixelcnn_samples.png").exists() and 0 < results["pixelcnn_samples/ssl/mean_value"] < 1


def test_cifar10_config_is_the_gated_pixelcnn_paper_s_network():
  from configs import pixelcnn_cifar10

  for arg, conditional in (("", False), ("conditional", True)):
    config = pixelcnn_cifar10.get_config(arg)
    settings = config.pixelcnn
    assert (settings.num_layers, settings.features, settings.first_kernel, settings.kernel) == (15, 384, 7, 3)
    assert settings.conditional == conditional and settings.super_resolution == 0
    assert (config.dataset.name, config.dataset.image_size, config.dataset.channels) == ("cifar10", 32, 3)
