"""ResNet and projection head: parameter counts equal torchvision's, strides, widths, and BN semantics."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.models import DINOHead, ProjectionHead, ResNet, ViT


def _num_params(module, shape):
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("depth,with_fc", [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_parameter_counts_equal_torchvision(depth, with_fc):
  model = ResNet(depth=depth)
  trunk = _num_params(model, (1, 224, 224, 3))
  assert trunk + model.feature_dim * 1000 + 1000 == with_fc  # torchvision resnetN with its 1000-way fc.


def test_width_multiplier_and_small_stem():
  model = ResNet(depth=50, width=2.0, small_stem=True)
  assert model.feature_dim == 4096 and model.downsampling == 8
  variables = model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=False)
  assert variables["params"]["stem_conv"]["kernel"].shape == (3, 3, 3, 128)
  out = model.apply(variables, jnp.ones((2, 32, 32, 3)), train=False)
  assert out.shape == (2, 4096) and out.dtype == jnp.float32


def test_resnet_blocks_start_as_identity():
  # Every block's last BN starts at scale 0 (SimCLR's ResNet), so a block without a projection shortcut is
  # relu(x) = x on the non-negative activations it receives at initialisation.
  model = ResNet(depth=18, width=0.25, small_stem=True)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  scales = [block["final_bn"]["scale"] for name, block in variables["params"].items() if name.startswith("_Block")]
  assert len(scales) == 8 and all(np.all(np.asarray(s) == 0) for s in scales)
  _, intermediates = model.apply(variables, x, train=False, capture_intermediates=True)
  block_in = intermediates["intermediates"]["_Block_0"]["__call__"][0]
  block_out = intermediates["intermediates"]["_Block_1"]["__call__"][0]
  np.testing.assert_allclose(block_out, block_in, rtol=1e-6)  # Blocks 0 and 1 keep the shape: pure identity.


def test_batchnorm_uses_batch_statistics_in_training_and_running_averages_in_eval():
  model = ResNet(depth=18, width=0.25, small_stem=True)
  x = jax.random.normal(jax.random.key(1), (8, 8, 8, 3))
  variables = model.init(jax.random.key(0), x, train=True)
  _, updates = model.apply(variables, x * 3 + 1, train=True, mutable=["batch_stats"])
  stem_before = variables["batch_stats"]["BatchNorm_0"]["mean"]
  stem_after = updates["batch_stats"]["BatchNorm_0"]["mean"]
  assert not np.allclose(stem_before, stem_after)
  # Eval mode is deterministic per example: a batch of one gives the same features as inside a batch.
  full = model.apply(variables, x, train=False)
  single = model.apply(variables, x[:1], train=False)
  np.testing.assert_allclose(full[:1], single, rtol=1e-5, atol=1e-6)


def test_bf16_compute_keeps_fp32_params():
  model = ResNet(depth=18, width=0.25, small_stem=True, dtype=jnp.bfloat16)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 3)), train=False)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("num_layers", [2, 3])
def test_projection_head_depth_and_final_bn(num_layers):
  head = ProjectionHead(out_dim=16, num_layers=num_layers)
  variables = head.init(jax.random.key(0), jnp.ones((4, 32)), train=False)
  params = variables["params"]
  dense = sorted(k for k in params if k.startswith("Dense"))
  assert len(dense) == num_layers and all("bias" not in params[k] for k in dense)
  last_bn = params[f"BatchNorm_{num_layers - 1}"]
  assert "bias" not in last_bn and "bias" in params["BatchNorm_0"]
  assert params[dense[0]]["kernel"].shape == (32, 32) and params[dense[-1]]["kernel"].shape == (32, 16)
  # In training mode the output is batch-normalised: zero mean and unit variance per feature.
  x = jax.random.normal(jax.random.key(1), (64, 32))
  out, _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)


@pytest.mark.parametrize("kernel,strides", [((3, 3), 2), ((7, 7), 2), ((1, 1), 2), ((3, 3), 1)])
def test_resnet_convolutions_pad_symmetrically(kernel, strides):
  """As SimCLR's fixed_padding and torchvision: (k - 1) // 2 on both sides, so a stride-2 convolution samples
  the same grid as the references (XLA's "SAME" puts the extra padding at the end)."""
  from ssljax.models.resnet import symmetric_conv

  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
  module = symmetric_conv(3, kernel, strides, dtype=jnp.float32)
  variables = module.init(jax.random.key(1), x)
  pad = [((k - 1) // 2,) * 2 for k in kernel]
  expected = jax.lax.conv_general_dilated(
    x, variables["params"]["kernel"], (strides, strides), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-6)
  if strides == 2 and kernel != (1, 1):  # Where "SAME" differs.
    same = jax.lax.conv_general_dilated(
      x, variables["params"]["kernel"], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert np.abs(np.asarray(same) - np.asarray(expected)).max() > 1e-3


def test_initialisers_are_torchvisions_or_simclrs():
  """He fan-out normal (torchvision): Var = 2 / (k^2 out); SimCLR's TF VarianceScaling(): Var = 1 / (k^2 in), a
  normal truncated at two standard deviations; SimCLR's projection head: N(0, 0.01^2)."""
  images = jnp.zeros((1, 8, 8, 3))
  for conv_init, variance, bound in (("he_fan_out", lambda i, o, k: 2 / (k * k * o), None), ("simclr", None, 2)):
    model = ResNet(depth=18, small_stem=True, conv_init=conv_init)
    params = jax.jit(lambda x, m=model: m.init(jax.random.key(0), x, train=False))(images)["params"]
    kernel = np.asarray(params["_Block_3"]["Conv_1"]["kernel"])  # Stage 2, 3x3, 128 -> 128.
    k, _, fan_in, fan_out = kernel.shape
    expected = variance(fan_in, fan_out, k) if variance else 1 / (k * k * fan_in)
    np.testing.assert_allclose(kernel.var(), expected, rtol=0.03)
    if bound:
      assert np.abs(kernel).max() <= bound * np.sqrt(expected) / 0.87962566 + 1e-6
  features = jnp.zeros((2, 2048))
  head = ProjectionHead(out_dim=128, num_layers=2, kernel_init_std=0.01)
  params = head.init(jax.random.key(1), features, train=False)["params"]
  for dense in ("Dense_0", "Dense_1"):
    np.testing.assert_allclose(np.asarray(params[dense]["kernel"]).std(), 0.01, rtol=0.02)
  # torchvision's default (MoCo v2, DINO's ResNet-50): each block's last BatchNorm starts at one, not zero.
  params = ResNet(depth=18, width=0.125, small_stem=True, zero_init_residual=False).init(
    jax.random.key(0), images, train=False
  )["params"]
  np.testing.assert_array_equal(params["_Block_0"]["final_bn"]["scale"], 1.0)


def test_dino_head_initialisation_equals_the_reference():
  """facebookresearch/dino `DINOHead`: MLP kernels N(0, 0.02^2) (trunc_normal_ at +-2 absolute), zero biases; the
  weight-normalised layer's direction torch's Linear default U(+-1/sqrt(bottleneck))."""
  head = DINOHead(out_dim=4096, hidden_dim=512, bottleneck_dim=256)
  params = jax.jit(lambda: head.init(jax.random.key(0), jnp.zeros((2, 384)), train=False))()["params"]
  for layer in ("Dense_0", "Dense_1", "Dense_2"):
    np.testing.assert_allclose(np.asarray(params["mlp"][layer]["kernel"]).std(), 0.02, rtol=0.02)
    np.testing.assert_array_equal(params["mlp"][layer]["bias"], 0.0)
  direction = np.asarray(params["last_layer"])
  bound = 256**-0.5
  assert np.abs(direction).max() <= bound and np.abs(direction).max() > 0.999 * bound
  np.testing.assert_allclose(direction.var(), bound**2 / 3, rtol=0.01)


def test_vit_features_for_dino_linear_evaluation_and_moco_v3_initialisation():
  """`cls_blocks` = 2 concatenates the normalised class tokens of the last two blocks: the first is a depth-1 ViT's
  feature with the same weights; `patch_mean` appends the mean of the last block's normalised patch tokens.
  moco-v3's ViT: q, k, v each Xavier [D, D] (bound sqrt(6 / 2D), above the fused matrix's sqrt(6 / 4D)), class
  token std 1e-6."""
  images = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
  vit = functools.partial(ViT, patch_size=4, width=32, num_heads=4)
  deep = vit(depth=2, cls_blocks=2, patch_mean=True)
  variables = deep.init(jax.random.key(1), images, train=False)
  features = deep.apply(variables, images, train=False)
  assert features.shape == (3, 96) and deep.feature_dim == 96
  shallow = {
    "params": {**variables["params"], "transformer": {"blocks_0": variables["params"]["transformer"]["blocks_0"]}}
  }
  np.testing.assert_allclose(features[:, :32], vit(depth=1).apply(shallow, images, train=False), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    features[:, 32:64], vit(depth=2).apply(variables, images, train=False), rtol=1e-5, atol=1e-6
  )
  tokens = deep.apply(
    variables, deep.apply(variables, images, method="embed_patches"), train=False, method="encode_tokens"
  )
  np.testing.assert_allclose(features[:, 64:], tokens[:, 1:].mean(axis=1), rtol=1e-5, atol=1e-6)

  moco = vit(depth=1, width=384, num_heads=12, qkv_init="separate", cls_token_std=1e-6)
  params = nn.meta.unbox(jax.jit(lambda: moco.init(jax.random.key(2), jnp.zeros((1, 8, 8, 3)), train=False))())[
    "params"
  ]
  qkv = np.asarray(params["transformer"]["blocks_0"]["attn"]["qkv"]["kernel"])
  assert qkv.shape == (384, 3, 12, 32)
  assert np.sqrt(6 / (4 * 384)) < np.abs(qkv).max() <= np.sqrt(6 / (2 * 384))
  np.testing.assert_allclose(np.asarray(params["cls_token"]).std(), 1e-6, rtol=0.2)
