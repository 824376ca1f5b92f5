"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"): a vertical
stack that sees the rows above and a horizontal stack that sees the pixels to the left in the same row (together:
every earlier pixel in raster order, without the original PixelCNN's blind spot), gated activations
tanh(a) * sigmoid(b), residual connections on the horizontal stack, an optional class-conditional bias in every
gate, and a 256-way softmax per sub-pixel. With `low_res_factor` every gate also reads a low-resolution copy of
the image: p(x | the image downsampled), the super-resolution PixelCNN the lectures show. The paper maps its
conditioning image through a learned network; here each gate reads the block means by a 1 x 1 map after
nearest-neighbour upsampling (a pixel sees its own block only, through the condition).

Differences from the paper: the first (mask A) layer has no residual connection (its input is the image); its
vertical stack with the 7 x 7 kernel reads 4 rows above (a literal masked 7 x 7 reads 3); the two output layers
are `features` wide; masked kernels start from LeCun normal over their full fan-in (the masked-out part is zero).

Causality. Output (i, j, c) may read input pixels (i', j') before (i, j) in raster order, and at (i, j) itself
only the channels before c (R, then G, then B). The vertical stack's output at row i reads rows <= i; it reaches the
horizontal stack shifted down one row. The horizontal stack reads columns < j through a convolution of the input
shifted right one column, and the current pixel through a 1 x 1 convolution whose weights are masked by channel
group (the features are split into as many groups as the image has channels): mask "A" (the first layer) lets
group g read the input channels < g, mask "B" (every later layer) the groups <= g.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LEVELS = 256  # Values of a sub-pixel.


def channel_groups(count: int, channels: int, period: int | None = None) -> np.ndarray:
  """The channel group of each of `count` features: `channels` contiguous groups of each block of `period`
  features (default: all of them; a gate's 2F outputs: period F, so both halves share the grouping)."""
  period = period or count
  return (np.arange(count) % period) * channels // period


def group_mask(in_groups: np.ndarray, out_groups: np.ndarray, mask_type: str) -> np.ndarray:
  """float32 [in, out]: 1 where output feature o may read input feature i at the same pixel, mask "A": group(i) <
  group(o); "B": group(i) <= group(o)."""
  if mask_type == "A":
    return (in_groups[:, None] < out_groups[None, :]).astype(np.float32)
  return (in_groups[:, None] <= out_groups[None, :]).astype(np.float32)


class MaskedDense(nn.Module):
  """A 1 x 1 convolution at the current pixel with its kernel masked by `group_mask`."""

  features: int
  mask: np.ndarray  # [in, out]

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return x @ (kernel * self.mask) + bias


def shift_down(x):
  """[N, H, W, C] -> the same, row i holding row i - 1 (zeros in row 0)."""
  return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def shift_right(x):
  return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


def gate(x):
  a, b = jnp.split(x, 2, axis=-1)
  return jnp.tanh(a) * jax.nn.sigmoid(b)


class GatedLayer(nn.Module):
  """One gated layer of both stacks: (vertical, horizontal, class one-hot or None, spatial condition [N, H, W, S] or
  None) -> (vertical, horizontal)."""

  features: int
  kernel_size: int
  channels: int  # Of the image: the number of channel groups.
  mask_type: str  # "A" for the first layer (reads the image), "B" after.

  @nn.compact
  def __call__(self, vertical, horizontal, condition, spatial=None):
    k, f, c = self.kernel_size, self.features, self.channels
    # Vertical: rows i - k // 2 .. i, columns j - k // 2 .. j + k // 2.
    v = nn.Conv(2 * f, (k // 2 + 1, k), padding=((k // 2, 0), (k // 2, k // 2)), name="vertical")(vertical)
    # Horizontal: columns j - k // 2 .. j - 1 of the same row, plus the current pixel by channel group.
    in_groups = channel_groups(horizontal.shape[-1], c)
    out_groups = channel_groups(2 * f, c, period=f)
    h = nn.Conv(2 * f, (1, k // 2), padding=((0, 0), (k // 2 - 1, 0)), name="left")(shift_right(horizontal))
    h = h + MaskedDense(2 * f, group_mask(in_groups, out_groups, self.mask_type), name="current")(horizontal)
    h = h + nn.Dense(2 * f, name="from_vertical")(shift_down(v))  # Rows above only.
    if condition is not None:
      v, h = (
        v + nn.Dense(2 * f, name="class_v")(condition)[:, None, None],
        h + nn.Dense(2 * f, name="class_h")(condition)[:, None, None],
      )
    if spatial is not None:  # A given input, not the image being generated: read at every position.
      v, h = v + nn.Dense(2 * f, name="spatial_v")(spatial), h + nn.Dense(2 * f, name="spatial_h")(spatial)
    gated = gate(h)
    if self.mask_type == "A":  # The first layer: the image's channels, no residual.
      return gate(v), gated
    residual = MaskedDense(f, group_mask(channel_groups(f, c), channel_groups(f, c), "B"), name="residual")(gated)
    return gate(v), horizontal + residual


class GatedPixelCNN(nn.Module):
  """Images int [N, H, W, C] in [0, 255] (and labels [N] when `num_classes`; the low-resolution image [N, H / f,
  W / f, C] in [0, 1] when `low_res_factor` f) -> logits [N, H, W, C, 256] and the last horizontal stack
  [N, H, W, F] (evaluation pools it)."""

  features: int = 64
  num_layers: int = 8
  first_kernel: int = 7
  kernel: int = 3
  channels: int = 1
  num_classes: int = 0
  low_res_factor: int = 0

  def setup(self):
    self.layers = [
      GatedLayer(self.features, self.first_kernel if i == 0 else self.kernel, self.channels, "A" if i == 0 else "B")
      for i in range(self.num_layers)
    ]
    groups = channel_groups(self.features, self.channels)
    self.head = MaskedDense(self.features, group_mask(groups, groups, "B"))
    logit_groups = np.repeat(np.arange(self.channels), LEVELS)  # [C * 256]: channel-major.
    self.out = MaskedDense(self.channels * LEVELS, group_mask(groups, logit_groups, "B"))

  def hidden(self, images, labels=None, low_res=None):
    x = images.astype(jnp.float32) / (LEVELS - 1) * 2.0 - 1.0
    condition = jax.nn.one_hot(labels, self.num_classes) if self.num_classes else None
    spatial = None
    if self.low_res_factor:
      spatial = jnp.repeat(jnp.repeat(low_res * 2.0 - 1.0, self.low_res_factor, 1), self.low_res_factor, 2)
    vertical, horizontal = x, x
    for layer in self.layers:
      vertical, horizontal = layer(vertical, horizontal, condition, spatial)
    return horizontal

  def __call__(self, images, labels=None, low_res=None):
    """(logits [N, H, W, C, 256], the last horizontal stack [N, H, W, F])."""
    hidden = self.hidden(images, labels, low_res)
    x = self.out(nn.relu(self.head(nn.relu(hidden))))
    return x.reshape(*images.shape, LEVELS), hidden


def downsample(images: jax.Array, factor: int) -> jax.Array:
  """[N, H, W, C] in [0, 1] -> [N, H / factor, W / factor, C]: the mean of each factor x factor block."""
  n, h, w, c = images.shape
  return images.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def sample(logits_fn, shape: tuple, key, temperature: float = 1.0) -> jax.Array:
  """Images int32 `shape` [N, H, W, C] drawn sub-pixel by sub-pixel in raster order (channels within a pixel in
  order): `logits_fn(images) -> [N, H, W, C, 256]` runs once per sub-pixel on the canvas drawn so far."""
  _, height, width, channels = shape

  def draw(position, canvas):
    i, rest = jnp.divmod(position, width * channels)
    j, c = jnp.divmod(rest, channels)
    logits = jax.lax.dynamic_slice(logits_fn(canvas), (0, i, j, c, 0), (shape[0], 1, 1, 1, LEVELS))
    value = jax.random.categorical(jax.random.fold_in(key, position), logits / temperature)
    return jax.lax.dynamic_update_slice(canvas, value.astype(jnp.int32), (0, i, j, c))

  return jax.lax.fori_loop(0, height * width * channels, draw, jnp.zeros(shape, jnp.int32))
