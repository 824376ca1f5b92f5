"""The random-init baseline is a fair random network: every residual branch contributes to its features, and its
BatchNorm statistics are those of training images."""

import jax
import numpy as np

from ssljax import baselines
from ssljax.models.resnet import ResNet

ENCODER = ResNet(depth=18, width=0.125, small_stem=True)
IMAGES = jax.random.uniform(jax.random.key(0), (32, 8, 8, 3))


def _features(variables, images=IMAGES):
  return np.asarray(ENCODER.apply(variables, images, train=False))


def _perturb_branch(variables):
  """The same network with the first convolution of block 1's residual branch replaced."""
  params = jax.tree.map(lambda x: x, variables["params"])
  kernel = params["_Block_1"]["Conv_0"]["kernel"]
  params["_Block_1"]["Conv_0"]["kernel"] = jax.random.normal(jax.random.key(9), kernel.shape) * kernel.std()
  return {**variables, "params": params}


def test_every_residual_branch_reaches_the_random_features():
  """At initialisation (zero final-BN scales) a residual branch's weights do not change the features at all; in
  the fair random network they do."""
  initial = ENCODER.init(jax.random.key(1), IMAGES[:2])
  np.testing.assert_array_equal(_features(initial), _features(_perturb_branch(initial)))  # The degenerate network.
  fair = baselines.random_network_variables(ENCODER, initial, [IMAGES])
  assert np.abs(_features(fair) - _features(_perturb_branch(fair))).max() > 1e-3
  scales = {k: v["final_bn"]["scale"] for k, v in fair["params"].items() if k.startswith("_Block")}
  assert all(np.all(np.asarray(s) == 1.0) for s in scales.values())
  # Non-zero initial values are kept (the stem's BatchNorm scale is 1 already; the kernels are untouched).
  np.testing.assert_array_equal(fair["params"]["stem_conv"]["kernel"], initial["params"]["stem_conv"]["kernel"])


def test_batchnorm_statistics_are_those_of_the_training_images():
  """After estimating the statistics on one batch, eval mode on that batch computes what train mode computes; on
  two batches the running mean is their average (torch's update_bn)."""
  initial = ENCODER.init(jax.random.key(1), IMAGES[:2])
  fair = baselines.random_network_variables(ENCODER, initial, [IMAGES])
  train_mode, _ = ENCODER.apply(fair, IMAGES, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(_features(fair), train_mode, rtol=1e-4, atol=1e-5)
  halves = baselines.random_network_variables(ENCODER, initial, [IMAGES[:16], IMAGES[16:]])
  first = baselines.random_network_variables(ENCODER, initial, [IMAGES[:16]])
  second = baselines.random_network_variables(ENCODER, initial, [IMAGES[16:]])
  mean = lambda s: s["batch_stats"]["BatchNorm_0"]["mean"]  # noqa: E731 - the stem's BatchNorm.
  np.testing.assert_allclose(mean(halves), (mean(first) + mean(second)) / 2, rtol=1e-5, atol=1e-6)
  stem = jax.lax.conv_general_dilated(
    IMAGES, initial["params"]["stem_conv"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  np.testing.assert_allclose(mean(fair), stem.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
