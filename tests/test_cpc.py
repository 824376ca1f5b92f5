"""CPC v2: the patch grid (golden), `cpc_infonce` against a loop over predictions in NumPy (value, and the global
batch's patches as negatives on 8 devices == 1), the context network's causality shown by gradients (through the
whole model: a prediction never reads a patch below its context row), the LayerNorm encoder's independence from
the batch, and the settings' errors. The shared step's 8 == 1 / NaN / resume tests run it under `pytest -m slow`
(tests/test_methods.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from configs import cpc_digits
from ssljax import augment, losses
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, build_method, cpc


def test_patch_grid_cuts_overlapping_patches_in_raster_order():
  pixel = np.arange(20)[:, None] * 100 + np.arange(20)[None, :]  # Each pixel's value names its row and column.
  images = jnp.asarray(np.stack([pixel, pixel + 10_000])[..., None], jnp.float32)
  grid = np.asarray(cpc.patch_grid(images, 8, 4))
  assert grid.shape == (2, 4, 4, 8, 8, 1)
  for n, i, j in ((0, 0, 0), (0, 1, 3), (1, 3, 2)):
    np.testing.assert_array_equal(grid[n, i, j, ..., 0], pixel[4 * i : 4 * i + 8, 4 * j : 4 * j + 8] + 10_000 * n)


def _infonce_loop(predictions, targets, offset):
  """For every prediction: -log softmax over all N H W targets, at its own patch (n, r + offset, c)."""
  n, h, w, d = targets.shape
  flat = targets.reshape(-1, d)
  terms = []
  for image in range(n):
    for row in range(h - offset):
      for column in range(w):
        logits = flat @ predictions[image, row, column]
        positive = logits[(image * h + row + offset) * w + column]
        terms.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - positive)
  return np.mean(terms)


@pytest.mark.parametrize("offset", (1, 2))
def test_cpc_infonce_scores_each_prediction_against_every_patch_of_the_batch(offset, mesh8):
  rng = np.random.default_rng(offset)
  targets = rng.normal(size=(8, 4, 3, 5))
  predictions = rng.normal(size=(8, 4 - offset, 3, 5))
  expected = _infonce_loop(predictions, targets, offset)
  loss = jax.jit(losses.cpc_infonce, static_argnums=2)
  np.testing.assert_allclose(loss(jnp.float32(predictions), jnp.float32(targets), offset), expected, rtol=1e-5)
  shard = NamedSharding(mesh8, PartitionSpec("data"))  # One image per device: the negatives cross devices.
  sharded = [jax.device_put(jnp.float32(a), shard) for a in (predictions, targets)]
  np.testing.assert_allclose(loss(*sharded, offset), expected, rtol=1e-5)
  # Another image's patches are negatives: with image 1's predictions zero, its patches still get a gradient,
  # through image 0's predictions.
  silent = jnp.float32(predictions[:2]).at[1].set(0.0)
  grad = jax.grad(lambda t: losses.cpc_infonce(silent, t, offset))(jnp.float32(targets[:2]))
  assert float(jnp.abs(grad[1]).sum()) > 0


def _model_and_inputs(normalization="layer"):
  config = cpc_digits.get_config()
  config.model.depth = 10
  config.model.normalization = normalization
  config.cpc.context_dim = 32
  method = build_method(config, BuildInfo(num_classes=10))
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
  inputs = method.make_inputs({"image": images, "label": jnp.zeros(2, jnp.int32)}, jax.random.key(1))
  variables = method.model.init(jax.random.key(2), inputs, train=False)
  return method, variables, inputs


def test_predictions_read_only_the_rows_at_and_above_their_context_row():
  method, variables, inputs = _model_and_inputs()
  patches = inputs["patches"]
  assert patches.shape == (2, 4, 4, 8, 8, 1)  # 20 px views, 8 px patches every 4 px.

  def per_row(patches):
    """Each offset's predictions summed per context row."""
    outputs = method.model.apply(variables, {"patches": patches}, train=True)
    return [jnp.sum(p, axis=(0, 2, 3)) for p in outputs["predictions"]]

  for offset, jacobian in zip((2, 3), jax.jit(jax.jacrev(per_row))(patches), strict=True):
    reach = np.asarray(jnp.abs(jacobian).sum(axis=(1, 3, 4, 5, 6)))  # [context row, patch row]
    assert reach.shape == (4 - offset, 4)
    for row in range(4 - offset):
      assert (reach[row, : row + 1] > 0).all() and (reach[row, row + 1 :] == 0).all(), (offset, reach)


def test_the_context_network_alone_is_causal_in_rows_and_sees_whole_rows():
  net = cpc.ContextNetwork(num_blocks=2, hidden_dim=8)
  z = jax.random.normal(jax.random.key(0), (1, 6, 6, 4))
  variables = net.init(jax.random.key(1), z)
  grad = jax.grad(lambda z: jnp.sum(net.apply(variables, z)[0, 3, 2]))(z)
  reach = np.asarray(jnp.abs(grad[0]).sum(-1))
  assert (reach[4:] == 0).all()  # Nothing below row 3 ...
  assert (reach[1:4, 0:5] > 0).all()  # ... and two blocks reach two rows up and two columns aside.


def test_the_layernorm_encoder_gives_each_patch_features_that_do_not_depend_on_the_batch():
  method, variables, inputs = _model_and_inputs()
  assert "batch_stats" not in variables
  features = method.model.apply(variables, inputs, train=True)["features"]
  alone = method.model.apply(variables, {"patches": inputs["patches"][:1]}, train=True)["features"]
  np.testing.assert_allclose(alone[0], features[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  ("override", "message"),
  [
    ({"offsets": (4,)}, r"config.cpc.offsets: \(4,\) must be rows ahead in \[1, 3\]"),
    ({"patch_stride": 9}, r"config.cpc: need 1 <= patch_stride \(9\) <= patch_size \(8\)"),
    ({"patch_size": 4, "patch_stride": 2}, "config.cpc.patch_size: 4 px is below the ResNet's total stride 8"),
  ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(override, message):
  config = cpc_digits.get_config()
  config.cpc.update(override)
  with pytest.raises(ConfigError, match=message):
    build_method(config, BuildInfo(num_classes=10))


def test_an_unknown_normalization_names_the_key():
  config = cpc_digits.get_config()
  config.model.normalization = "group"
  with pytest.raises(ConfigError, match="config.model.normalization: unknown value 'group'"):
    build_method(config, BuildInfo(num_classes=10))


def test_evaluation_features_are_the_patch_grid_of_the_whole_image_averaged():
  method, variables, inputs = _model_and_inputs()
  images = jax.random.uniform(jax.random.key(3), (2, 16, 16, 1))
  features = method.model.apply(variables, images, method="encode")
  views = jax.vmap(lambda image: augment.resize_box(image, 0, 0, 16, 16, 20))(images)
  outputs = method.model.apply(variables, {"patches": cpc.patch_grid(views, 8, 4)}, train=False)
  np.testing.assert_allclose(features, outputs["features"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(views[:, ::19, ::19], images[:, ::15, ::15], atol=1e-6)  # The corners stay put.
