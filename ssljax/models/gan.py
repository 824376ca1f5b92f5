"""DCGAN's generator and discriminator (Radford et al. 2016), sized by the image: the generator goes from a 4 x 4
grid to the image side by stride-2 transposed convolutions, the discriminator back down by stride-2 convolutions,
as the PyTorch DCGAN example's netG / netD (64 px: widths 8w, 4w, 2w, w) at any side 4 * 2^n. As the paper:
no pooling, BatchNorm in both networks except the generator's output and the discriminator's input layer, ReLU in
the generator with tanh on its output, LeakyReLU(0.2) in the discriminator, no biases before a BatchNorm, weights
from N(0, 0.02) and BatchNorm scales from N(1, 0.02)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

WEIGHT_INIT = nn.initializers.normal(0.02)


def bn_scale_init(key, shape, dtype=jnp.float32):
  """DCGAN's BatchNorm weights: N(1, 0.02)."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def doublings(image_size: int) -> int:
  """n with image_size = 4 * 2^n (n >= 1), or ValueError naming the size."""
  n = round(math.log2(max(image_size, 1) / 4))
  if n < 1 or 4 * 2**n != image_size:
    raise ValueError(f"image_size: DCGAN needs a side of 4 * 2^n >= 8 px, not {image_size}")
  return n


class Generator(nn.Module):
  """Noise [N, Z] -> images [N, S, S, C] in [-1, 1]: a projection to 4 x 4 x (w 2^(n-1)), then n stride-2
  transposed 4 x 4 convolutions halving the width, the last to C channels and tanh."""

  image_size: int
  channels: int
  width: int = 64  # The last hidden layer's channels (DCGAN's ngf).
  bn_momentum: float = 0.9  # PyTorch's BatchNorm momentum 0.1.

  def _norm(self, x, train):
    return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, scale_init=bn_scale_init)(x)

  def _upsample(self, width, x):
    return nn.ConvTranspose(width, (4, 4), (2, 2), "SAME", use_bias=False, kernel_init=WEIGHT_INIT)(x)

  @nn.compact
  def __call__(self, noise, train: bool = True):
    n = doublings(self.image_size)
    features = self.width * 2 ** (n - 1)
    x = nn.Dense(4 * 4 * features, use_bias=False, kernel_init=WEIGHT_INIT)(noise.astype(jnp.float32))
    x = nn.relu(self._norm(x.reshape(noise.shape[0], 4, 4, features), train))
    for layer in range(1, n):
      x = nn.relu(self._norm(self._upsample(features // 2**layer, x), train))
    return jnp.tanh(self._upsample(self.channels, x))


class Discriminator(nn.Module):
  """Images [N, S, S, C] in [-1, 1] -> (logits [N], the activations of its n hidden layers): n stride-2 4 x 4
  convolutions doubling the width from w (BatchNorm after all but the first), LeakyReLU(0.2), then a 4 x 4
  convolution of the 4 x 4 grid to one logit."""

  width: int = 64  # The first layer's channels (DCGAN's ndf).
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, images, train: bool = True):
    n = doublings(images.shape[1])
    x, hidden = images.astype(jnp.float32), []
    for layer in range(n):
      x = nn.Conv(self.width * 2**layer, (4, 4), (2, 2), "SAME", use_bias=False, kernel_init=WEIGHT_INIT)(x)
      if layer:
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, scale_init=bn_scale_init)(x)
      x = nn.leaky_relu(x, 0.2)
      hidden.append(x)
    logits = nn.Conv(1, (4, 4), padding="VALID", use_bias=False, kernel_init=WEIGHT_INIT)(x)
    return logits.reshape(images.shape[0]), tuple(hidden)


def pooled_features(hidden) -> jax.Array:
  """DCGAN's evaluation features: every hidden layer's activations max-pooled to a 4 x 4 grid, flattened and
  concatenated: [N, 16 * (w + 2w + ...)]."""
  pooled = []
  for x in hidden:
    window = x.shape[1] // 4
    pooled.append(nn.max_pool(x, (window, window), (window, window)).reshape(x.shape[0], -1))
  return jnp.concatenate(pooled, axis=-1)
