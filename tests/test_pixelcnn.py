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


@pytest.mark.parametrize("channels", [1, 3])
def test_the_network_reads_only_earlier_sub_pixels_and_every_one_in_its_field(channels):
  """Output (i, j, c) has zero gradient on every input at or after (i, j, c) in generation order, and non-zero
  gradient on the pixels just before it, including up and to the right (the original PixelCNN's blind spot)."""
  shape = (6, 6, channels)
  model = GatedPixelCNN(features=24, num_layers=3, first_kernel=5, kernel=3, channels=channels)
  variables = model.init(jax.random.key(1), jnp.zeros((1, *shape), jnp.int32))
  # The float image in [0, 255] goes through the same scaling as sub-pixel values.
  depends = _dependence(lambda x: model.apply(variables, (x + 1) * 127.5)[0].sum(-1), shape)
  order = _order(*shape)
  later = order[None, None, None] >= order[..., None, None, None]  # [out..., in...]: input at or after output.
  assert not np.any(depends & later)
  for i, j in ((3, 2), (4, 3)):
    for di, dj in ((0, -1), (-1, 0), (-1, 1), (-1, -1), (-2, 2)):
      assert depends[i, j, 0, i + di, j + dj].any(), (i, j, di, dj)
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
  assert gradient[0, 0] > 0


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_one_layer_reads_the_current_pixel_as_its_mask_says(mask_type):
  """A single gated layer's horizontal output: group g at (i, j) reads the current pixel's channels < g (mask A) or
  <= g (mask B), and never a later pixel."""
  shape, channels = (5, 5, 3), 3
  layer = GatedLayer(features=3, kernel_size=3, channels=channels, mask_type=mask_type)
  x = jnp.zeros((1, *shape))
  variables = layer.init(jax.random.key(0), x, x, None)
  depends = _dependence(lambda x: layer.apply(variables, x, x, None)[1], shape)
  order = _order(*shape)
  pixel = order[..., :1] // channels  # [H, W, 1]: the pixel's place.
  assert not np.any(depends & (pixel[None, None, None] > pixel[..., None, None, None]))
  current = depends[2, 2, :, 2, 2, :]  # [output group, input channel]
  np.testing.assert_array_equal(current, group_mask(np.arange(3), np.arange(3), mask_type).T.astype(bool))


def test_the_loss_is_the_mean_nll_and_bits_per_dim():
  targets = jnp.array([[[[0], [255]]]], jnp.int32)
  outputs = {"logits": jnp.zeros((1, 1, 2, 1, 256)), "targets": targets, "features": jnp.ones((1, 4))}
  loss, metrics = pixelcnn.pixelcnn_loss(outputs, None, 0)
  np.testing.assert_allclose(loss, np.log(256), rtol=1e-6)
  np.testing.assert_allclose(metrics["bits_per_dim"], 8.0, rtol=1e-6)  # Uniform: 8 bits.
  sure = outputs | {"logits": jax.nn.one_hot(targets, 256) * 50.0}
  assert float(pixelcnn.pixelcnn_loss(sure, None, 0)[0]) < 1e-10
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


def test_bad_settings_are_one_line_errors_naming_the_key():
  config = pixelcnn_digits.get_config("runlocal")
  config.pixelcnn.kernel = 4
  with pytest.raises(ConfigError, match="config.pixelcnn.kernel: 4 is invalid"):
    build_method(config, BuildInfo(10))
  config = pixelcnn_digits.get_config("runlocal,conditional")
  with pytest.raises(ConfigError, match="config.pixelcnn.conditional: True is invalid"):
    build_method(config, BuildInfo(0))
  config = pixelcnn_digits.get_config("runlocal")
  config.evals.finetune = dict(type="finetune")
  with pytest.raises(ConfigError, match="config.evals.finetune: finetune trains the encoder on images"):
    build_method(config, BuildInfo(10))


def test_a_short_run_beats_the_uniform_likelihood_and_samples(tmp_path):
  """The smoke config (class-conditional) trained 100 steps on 8 px digits: held-out bits per dimension below the
  independent-pixel model's (measured 2.12 vs 2.42; uniform: 8), that baseline equal to NumPy's on the same
  splits, samples written."""
  config = pixelcnn_digits.get_config("runlocal,conditional")
  config.total_steps = 100
  config.optimizer.base_lr = 1e-2
  config.eval_baselines = ()
  config.evals = {"likelihood": {"type": "likelihood"}, "samples": {"type": "pixelcnn_samples", "num_images": 10}}
  results = experiment.train_and_evaluate(config, str(tmp_path))
  assert results["likelihood/ssl/bits_per_dim"] < results["likelihood/independent_pixels/bits_per_dim"], results
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
