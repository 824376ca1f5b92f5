"""CycleGAN's networks (Zhu et al. 2017, appendix 7.2), as the authors' PyTorch code builds them (`ResnetGenerator`,
`NLayerDiscriminator` with instance normalisation): convolutions with biases, weights from N(0, 0.02), biases 0,
instance normalisation without affine parameters or running statistics (so train and eval are the same
function), reflection padding around the 7 x 7 and residual convolutions, zero padding elsewhere."""

import flax.linen as nn
import jax.numpy as jnp

WEIGHT_INIT = nn.initializers.normal(0.02)


def instance_norm(x):
  """Each image's channels normalised over its own pixels (PyTorch's InstanceNorm2d(affine=False), eps 1e-5, its
  variance as the mean squared deviation)."""
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, use_fast_variance=False)(x)


def reflect_pad(x, width: int):
  return jnp.pad(x, ((0, 0), (width, width), (width, width), (0, 0)), mode="reflect")


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0):
  return nn.Conv(features, (kernel, kernel), (stride, stride), ((padding, padding),) * 2, kernel_init=WEIGHT_INIT)


class ResidualBlock(nn.Module):
  """x + [reflect pad 1, 3 x 3 conv, instance norm, ReLU, reflect pad 1, 3 x 3 conv, instance norm](x)."""

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    y = nn.relu(instance_norm(conv(width, 3)(reflect_pad(x, 1))))
    return x + instance_norm(conv(width, 3)(reflect_pad(y, 1)))


class ResnetGenerator(nn.Module):
  """Images [N, S, S, C] in [-1, 1] -> images [N, S, S, C] in [-1, 1] (S a multiple of 4): the paper's c7s1-w,
  d2w, d4w, `blocks` x R4w, u2w, uw, c7s1-C with tanh (w: `width`, 64 in the paper; 9 blocks at 256 px, 6 at
  128). The stride-2 transposed convolutions are PyTorch's (kernel 3, padding 1, output padding 1)."""

  width: int = 64
  blocks: int = 9

  @nn.compact
  def __call__(self, images):
    channels = images.shape[-1]
    x = nn.relu(instance_norm(conv(self.width, 7)(reflect_pad(images.astype(jnp.float32), 3))))
    for scale in (2, 4):
      x = nn.relu(instance_norm(conv(self.width * scale, 3, stride=2, padding=1)(x)))
    for _ in range(self.blocks):
      x = ResidualBlock()(x)
    for scale in (2, 1):
      # PyTorch's ConvTranspose2d(k=3, s=2, padding=1, output_padding=1): the dilated input padded (1, 2).
      x = nn.ConvTranspose(
        self.width * scale, (3, 3), (2, 2), ((1, 2), (1, 2)), kernel_init=WEIGHT_INIT, transpose_kernel=True
      )(x)
      x = nn.relu(instance_norm(x))
    return jnp.tanh(conv(channels, 7)(reflect_pad(x, 3)))


def patch_grid(image_size: int, layers: int) -> int:
  """The side of a PatchGAN's output grid: image_size / 2^layers - 2 (30 x 30 patches of a 256 px image)."""
  return image_size // 2**layers - 2


class PatchDiscriminator(nn.Module):
  """Images [N, S, S, C] in [-1, 1] -> raw outputs [N, P, P] (P = `patch_grid`), one per overlapping patch: the
  paper's C64-C128-C256-C512 for `layers` = 3 (70 x 70 patches), i.e. `layers` stride-2 4 x 4 convolutions (widths
  w, 2w, 4w, ... capped at 8w; instance norm after all but the first) and a stride-1 one, each with LeakyReLU(0.2),
  then a stride-1 4 x 4 convolution to one channel; padding 1 throughout."""

  width: int = 64
  layers: int = 3

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32)
    for layer in range(self.layers + 1):
      x = conv(self.width * min(2**layer, 8), 4, stride=2 if layer < self.layers else 1, padding=1)(x)
      x = nn.leaky_relu(instance_norm(x) if layer else x, 0.2)
    return conv(1, 4, padding=1)(x)[..., 0]
