"""ResNet v1 (He et al. 2016) as used by SimCLR: ResNet-18/34/50 with a width multiplier and an optional
small-image stem (3x3 stride-1 convolution, no max-pool) for 32 px and smaller inputs.

Deliberate differences from SimCLR's TF ResNet: the first block of stage 1 has an identity shortcut where its
input already has the block's width (ResNet-18/34: torchvision's ResNet, which the PyTorch references MoCo, BYOL
ports, DINO and solo-learn use; SimCLR projects every first block); the max-pool pads "SAME" as SimCLR does.
Convolutions start from torchvision's He fan-out normal unless `conv_init="simclr"` (SimCLR's fan-in truncated
normal, which the SimCLR CIFAR-10 and ImageNet configs use; the digits default keeps He's).

BatchNorm runs over the batch axis of whatever array it sees; under `jax.jit` with a batch-sharded input that
is the global batch (SimCLR's "global BN"), with no explicit collective needed.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Stage depths and block type of each supported depth.
RESNET_SPECS = {
  10: ((1, 1, 1, 1), "basic"),
  18: ((2, 2, 2, 2), "basic"),
  34: ((3, 4, 6, 3), "basic"),
  50: ((3, 4, 6, 3), "bottleneck"),
}
# Convolution initialisers: torchvision's kaiming_normal_(mode="fan_out") (He et al.; the PyTorch references MoCo,
# BYOL ports, DINO, solo-learn), or SimCLR's TF default VarianceScaling() (scale 1, fan-in, truncated normal).
CONV_INITS = {
  "he_fan_out": nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
  "simclr": nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
}


def symmetric_conv(
  features: int, kernel_size, strides: int = 1, *, dtype, name: str | None = None, kernel_init=CONV_INITS["he_fan_out"]
) -> nn.Conv:
  """A bias-free convolution (BatchNorm follows) padded (k - 1) // 2 on both sides, as SimCLR's `fixed_padding` and
  torchvision: XLA's "SAME" pads a stride-2 convolution asymmetrically (its extra row and column at the end),
  which shifts every downsampled grid by half a pixel against the references' weights and features."""
  padding = [((k - 1) // 2, (k - 1) // 2) for k in kernel_size]
  return nn.Conv(
    features, kernel_size, strides, padding=padding, use_bias=False, dtype=dtype, kernel_init=kernel_init, name=name
  )


class _Block(nn.Module):
  """Residual block; `bottleneck` picks 1x1-3x3-1x1 (expansion 4) over two 3x3 convolutions."""

  filters: int
  strides: int
  bottleneck: bool
  norm: Any
  conv: Any
  zero_init_residual: bool = True

  @nn.compact
  def __call__(self, x):
    out_filters = self.filters * 4 if self.bottleneck else self.filters
    residual = x
    if self.bottleneck:
      y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
      y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
      y = self.conv(out_filters, (1, 1))(y)
    else:
      y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(x)))
      y = self.conv(self.filters, (3, 3))(y)
    # The last BN of each block starts at zero so every block starts as the identity (SimCLR's ResNet, torchvision's
    # zero_init_residual=True); torchvision's default starts it at one (MoCo v2, DINO).
    scale_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.norm(scale_init=scale_init, name="final_bn")(y)
    if residual.shape != y.shape:
      residual = self.norm()(self.conv(out_filters, (1, 1), self.strides, name="shortcut_conv")(residual))
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """ResNet trunk mapping images [N, H, W, C] to pooled features [N, feature_dim].

  Attributes:
    depth: 10, 18, 34 or 50.
    width: width multiplier on every layer's channel count (SimCLR's 1x, 2x, 4x).
    small_stem: 3x3 stride-1 stem without max-pool (CIFAR-style) instead of 7x7 stride-2 plus max-pool.
    dtype: computation dtype (e.g. bfloat16); parameters stay float32.
    bn_momentum: running-average decay of the BatchNorm statistics.
    conv_init: a key of CONV_INITS.
    zero_init_residual: each block's last BatchNorm scale starts at zero (else one).
    normalization: "batch" (BatchNorm) or "layer" (LayerNorm over each example's whole activation map, per-channel
      scale and offset: CPC v2's encoder, where BatchNorm would let the patches of an image share statistics).
    pool: average the last stage's map into [N, feature_dim]; False returns the map [N, H / downsampling,
      W / downsampling, feature_dim] (dense prediction: colorization). The parameters are the same either way.
  """

  depth: int = 50
  width: float = 1.0
  small_stem: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  conv_init: str = "he_fan_out"
  zero_init_residual: bool = True
  normalization: str = "batch"
  pool: bool = True

  @property
  def downsampling(self) -> int:
    """Total stride of the trunk: the input side must be at least this for the last stage to have a pixel."""
    return 8 if self.small_stem else 32

  @property
  def feature_dim(self) -> int:
    return int(64 * self.width) * 8 * (4 if RESNET_SPECS[self.depth][1] == "bottleneck" else 1)

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.depth not in RESNET_SPECS:
      raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}, got {self.depth}")
    stage_sizes, block = RESNET_SPECS[self.depth]
    conv = functools.partial(symmetric_conv, dtype=self.dtype, kernel_init=CONV_INITS[self.conv_init])
    if self.normalization == "layer":
      norm = functools.partial(nn.LayerNorm, epsilon=1e-5, reduction_axes=(-3, -2, -1), dtype=self.dtype)
    else:
      norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype
      )
    base = int(64 * self.width)
    x = x.astype(self.dtype)
    if self.small_stem:
      x = nn.relu(norm()(conv(base, (3, 3), name="stem_conv")(x)))
    else:
      x = nn.relu(norm()(conv(base, (7, 7), 2, name="stem_conv")(x)))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for stage, num_blocks in enumerate(stage_sizes):
      for index in range(num_blocks):
        strides = 2 if stage > 0 and index == 0 else 1
        x = _Block(base * 2**stage, strides, block == "bottleneck", norm, conv, self.zero_init_residual)(x)
    return (jnp.mean(x, axis=(1, 2)) if self.pool else x).astype(jnp.float32)


class MLPHead(nn.Module):
  """The projector / predictor MLPs of the SSL family: `num_layers` Dense layers, each hidden one followed by
  BatchNorm (optional) and the activation, the last one optionally by a BatchNorm of its own kind.

  Attributes:
    out_dim: output width.
    num_layers: Dense layers in all (>= 1).
    hidden_dim: width of the hidden layers (None: the input width).
    hidden_norm: BatchNorm after each hidden Dense (SimCLR, BYOL, SimSiam, MoCo v3; not MoCo v2 or DINO).
    hidden_bias, last_bias: Dense biases (off where a BatchNorm follows, as in the references).
    last_norm: "none", "affine" (scale and offset), "scale" (SimCLR: no offset) or "plain" (SimSiam's and MoCo
      v3's BatchNorm(affine=False)).
    kernel_init_std: Dense kernels ~ N(0, std^2) (SimCLR's projection head: 0.01); None: Flax's LeCun normal.
  """

  out_dim: int = 128
  num_layers: int = 2
  hidden_dim: int | None = None
  hidden_norm: bool = True
  hidden_bias: bool = False
  last_bias: bool = False
  last_norm: str = "none"
  activation: Any = nn.relu
  dtype: Any = jnp.float32
  kernel_init_std: float | None = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.last_norm not in ("none", "affine", "scale", "plain"):
      raise ValueError(f"MLPHead.last_norm: unknown {self.last_norm!r} (none, affine, scale, plain)")
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    hidden_dim = self.hidden_dim or x.shape[-1]
    init = {} if self.kernel_init_std is None else {"kernel_init": nn.initializers.normal(self.kernel_init_std)}
    for _ in range(self.num_layers - 1):
      x = nn.Dense(hidden_dim, use_bias=self.hidden_bias, dtype=self.dtype, **init)(x)
      x = self.activation(norm()(x) if self.hidden_norm else x)
    x = nn.Dense(self.out_dim, use_bias=self.last_bias, dtype=self.dtype, **init)(x)
    if self.last_norm != "none":
      x = norm(use_scale=self.last_norm != "plain", use_bias=self.last_norm == "affine")(x)
    return x.astype(jnp.float32)


class ProjectionHead(MLPHead):
  """SimCLR's projection MLP: `num_layers` Dense+BN layers, ReLU between them (v1: 2 layers, v2: 3 layers).

  As in the reference, hidden layers keep the input width unless `hidden_dim` is set, dense layers have no
  bias (BN follows), and the last BN has no offset.
  """

  last_norm: str = "scale"


class DINOHead(nn.Module):
  """DINO's projection head (facebookresearch/dino `DINOHead`): a 3-layer GELU MLP (hidden 2048, no BatchNorm) to
  a `bottleneck_dim` bottleneck, l2-normalised, then a weight-normalised linear layer without bias to `out_dim`
  logits. With `norm_last_layer` its weight-norm gain is fixed at 1 (each output unit's weight vector is unit
  length); otherwise the gain `last_layer_gain` is learned. `use_bn` puts BatchNorm after the hidden layers (the
  reference's `use_bn_in_head`). Initialised as the reference: MLP kernels N(0, 0.02^2) (its `trunc_normal_(std=.02)`
  cuts at +-2 absolute, i.e. never at this std), zero biases, the last layer's direction U(+-1/sqrt(bottleneck))
  (torch's default for the Linear it weight-normalises)."""

  out_dim: int = 65536
  hidden_dim: int = 2048
  bottleneck_dim: int = 256
  num_layers: int = 3
  norm_last_layer: bool = True
  use_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    mlp = MLPHead(
      self.bottleneck_dim,
      self.num_layers,
      self.hidden_dim,
      hidden_norm=self.use_bn,
      hidden_bias=True,
      last_bias=True,
      activation=functools.partial(nn.gelu, approximate=False),
      dtype=self.dtype,
      kernel_init_std=0.02,
      name="mlp",
    )
    x = mlp(x, train=train)
    x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))
    torch_linear_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")  # U(+-1/sqrt(fan_in))
    direction = self.param("last_layer", torch_linear_init, (self.bottleneck_dim, self.out_dim))
    weight = direction * jax.lax.rsqrt(jnp.sum(direction * direction, axis=0, keepdims=True))
    if not self.norm_last_layer:
      weight = weight * self.param("last_layer_gain", nn.initializers.ones, (self.out_dim,))
    return x @ weight
