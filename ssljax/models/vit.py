"""Vision Transformer (Dosovitskiy et al. 2021) as used by MAE (He et al. 2022): pre-norm blocks, a class token,
fixed 2D sin-cos position embeddings, attention through `jax.nn.dot_product_attention` (fused kernels on GPU).

Initialisation follows facebookresearch/mae: Xavier-uniform linear layers (the fused qkv projection counted as
one [D, 3D] matrix), zero biases, class/mask tokens N(0, 0.02), LayerNorm eps 1e-6, exact (erf) GELU.
Every parameter carries logical axis names ("embed", "mlp", "heads", "kv", "qkv", "patch") so that a mesh can
shard them by rules; `nn.meta.unbox` strips the annotations where they are not needed.
"""

import contextlib
import contextvars
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

# (width, depth, heads) of the standard sizes; the MLP is 4x wide in all of them.
VIT_SPECS = {"Ti": (192, 12, 3), "S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "H": (1280, 32, 16)}


def partitioned(init, names):
  """`init` whose parameter carries the logical axis names `names`."""
  return nn.with_logical_partitioning(init, names)


_xavier = nn.initializers.xavier_uniform()


def patchify(images, patch_size: int):
  """[N, H, W, C] -> [N, (H/p)(W/p), p*p*C]: patches in row-major order, pixels within a patch in (row, column,
  channel) order, as the reference's `patchify`."""
  _, height, width, _ = images.shape
  if height % patch_size or width % patch_size:
    raise ValueError(f"image size {height}x{width} is not divisible by the patch size {patch_size}")
  return einops.rearrange(images, "n (h p) (w q) c -> n (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(patches, patch_size: int):
  """Inverse of `patchify` for square images: [N, L, p*p*C] -> [N, sqrt(L) p, sqrt(L) p, C]."""
  grid = square_grid_size(patches.shape[1])
  return einops.rearrange(patches, "n (h w) (p q c) -> n (h p) (w q) c", h=grid, p=patch_size, q=patch_size)


def square_grid_size(num_patches: int) -> int:
  grid = int(round(num_patches**0.5))
  if grid * grid != num_patches:
    raise ValueError(f"{num_patches} patches do not form a square grid")
  return grid


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
  """[M] positions -> [M, dim]: sines then cosines at frequencies 10000^(-k / (dim/2)), k < dim/2."""
  frequencies = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float32) / (dim / 2))
  angles = positions.reshape(-1).astype(np.float32)[:, None] * frequencies
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_pos_embed_2d(embed_dim: int, grid_size: int, cls_token: bool = False) -> np.ndarray:
  """Fixed position embeddings [grid_size^2 (+1), embed_dim] float32, equal to the reference
  `get_2d_sincos_pos_embed`: the first half of the channels encodes the column, the second half the row (the
  reference's meshgrid puts the width coordinate first); with `cls_token`, a zero row is prepended."""
  if embed_dim % 4:
    raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {embed_dim}")
  rows, columns = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
  embed = np.concatenate([_sincos_1d(embed_dim // 2, columns), _sincos_1d(embed_dim // 2, rows)], axis=1)
  if cls_token:
    embed = np.concatenate([np.zeros((1, embed_dim), np.float32), embed])
  return embed


_FORCED_ATTENTION = contextvars.ContextVar("ssljax_forced_attention", default=None)


@contextlib.contextmanager
def forced_attention(implementation: str):
  """Models traced inside this context (in this thread) compute attention with `implementation` ("xla" or
  "cudnn") instead of `attention_implementation`'s choice: for benchmarks that compare the two kernels."""
  token = _FORCED_ATTENTION.set(implementation)
  try:
    yield
  finally:
    _FORCED_ATTENTION.reset(token)


def attention_implementation(dtype, head_dim: int, platform: str) -> str | None:
  """ "cudnn" (the fused flash-attention kernel) where it applies: GPUs, bf16 / fp16, head_dim a multiple of 8 up
  to 128; otherwise None, XLA's composition (the only choice on CPUs and TPUs), which materialises the logits.
  `forced_attention` overrides the choice."""
  if forced := _FORCED_ATTENTION.get():
    return forced
  supported = platform == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
  return "cudnn" if supported and head_dim % 8 == 0 and head_dim <= 128 else None


def dot_product_attention(query, key, value, implementation: str | None = None, causal: bool = False):
  """softmax(q k^T / sqrt(head_dim)) v for [N, T, heads, head_dim] inputs through `jax.nn.dot_product_attention`
  with `implementation` ("cudnn", "xla" or None: XLA); `causal`: position t attends to positions <= t only.

  jax's cuDNN training path (0.10 - 0.11) rejects odd sequence lengths: it checks them as if a bias were given
  ("Unsupported sequence length Q 197, KV 197"), and a ViT has an odd length at the usual sizes (196 patches of a
  224 px image plus the class token; 36 + 1 for DINO's 96 px crops). For cuDNN an odd length gets one padding
  token that no query attends to (a padding mask through `key_value_seq_lengths`), whose own output row is
  dropped (`_padded_attention`, tested with XLA's kernel where cuDNN is not available). Shapes that cuDNN still
  rejects when the step is traced fall back to XLA's attention, with a warning."""
  length = query.shape[1]
  if implementation != "cudnn":
    return jax.nn.dot_product_attention(query, key, value, is_causal=causal, implementation=implementation)
  try:
    if length % 2 == 0:
      return jax.nn.dot_product_attention(query, key, value, is_causal=causal, implementation="cudnn")
    return _padded_attention(query, key, value, "cudnn", causal)
  except (NotImplementedError, ValueError) as error:
    logging.warning("cuDNN attention rejected %s: XLA's attention instead (%s)", query.shape, error)
    return jax.nn.dot_product_attention(query, key, value, is_causal=causal, implementation="xla")


def _padded_attention(query, key, value, implementation: str | None, causal: bool = False):
  """Attention over inputs padded with one token along the sequence, masked out as a key and dropped as a query
  (the padding comes last, so a causal mask keeps it out too)."""
  length = query.shape[1]
  query, key, value = (jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0))) for x in (query, key, value))
  lengths = jnp.full((query.shape[0],), length, jnp.int32)
  out = jax.nn.dot_product_attention(
    query, key, value, key_value_seq_lengths=lengths, is_causal=causal, implementation=implementation
  )
  return out[:, :length]


class LoRA(nn.Module):
  """The low-rank update of a linear layer (Hu et al. 2021): (alpha / rank) x A B for inputs x [..., *in] and
  outputs [..., *out], A [prod(in), rank] ~ U(+-1/sqrt(prod(in))) (their code's Kaiming-uniform), B = 0, so the
  adapted layer starts as the pretrained one. Added to the layer's output; only A and B are trained."""

  out_shape: tuple
  num_in_axes: int
  rank: int
  alpha: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    fan_in = int(np.prod(x.shape[-self.num_in_axes :]))
    bound = 1.0 / np.sqrt(fan_in)
    a = self.param(
      "a", lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound), (fan_in, self.rank)
    )
    b = self.param("b", nn.initializers.zeros, (self.rank, int(np.prod(self.out_shape))))
    flat = x.reshape(*x.shape[: -self.num_in_axes], fan_in)
    delta = (flat @ a.astype(self.dtype)) @ b.astype(self.dtype) * (self.alpha / self.rank)
    return delta.reshape(*x.shape[: -self.num_in_axes], *self.out_shape)


def _adapted(layer_output, x, lora: tuple | None, out_shape: tuple, num_in_axes: int, dtype, name: str):
  """`layer_output` plus a `LoRA` branch on `x` when `lora` = (rank, alpha) is set."""
  if lora is None:
    return layer_output
  return layer_output + LoRA(out_shape, num_in_axes, *lora, dtype=dtype, name=name)(x)


# Xavier-uniform of the fused [D, 3D] qkv kernel (MAE), or of q, k and v as three [D, D] matrices (moco-v3's
# `vits.py`): bound sqrt(6 / 2D), which is the fused kernel's fan_avg (2D) at scale 2.
QKV_INITS = {"fused": _xavier, "separate": nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")}


class Attention(nn.Module):
  num_heads: int
  dtype: Any = jnp.float32
  lora: tuple | None = None  # (rank, alpha): LoRA on the qkv and output projections.
  qkv_init: str = "fused"  # A key of QKV_INITS.
  causal: bool = False  # Each position attends to itself and the positions before it (GPT, CLIP's text tower).
  init_scheme: str = "xavier"  # Or a scheme of `init_stds` ("clip", "gpt2", "bert") for a tower of `init_depth` blocks.
  init_depth: int = 0

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    head_dim = width // self.num_heads
    stds = init_stds(self.init_scheme, width, self.init_depth)
    # DenseGeneral initialises the flattened [D, 3D] kernel: fan-in D, fan-out 3D, as MAE's Xavier init of its
    # fused qkv weight ("fused"), or as three [D, D] matrices ("separate": moco-v3).
    qkv_shape = (3, self.num_heads, head_dim)
    qkv = nn.DenseGeneral(
      qkv_shape,
      dtype=self.dtype,
      kernel_init=partitioned(
        nn.initializers.normal(stds["attn"]) if stds else QKV_INITS[self.qkv_init],
        ("embed", "qkv", "heads", "kv"),
      ),
      bias_init=partitioned(nn.initializers.zeros, ("qkv", "heads", "kv")),
      name="qkv",
    )(x)
    qkv = _adapted(qkv, x, self.lora, qkv_shape, 1, self.dtype, "qkv_lora")
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [N, T, heads, head_dim]
    implementation = attention_implementation(query.dtype, head_dim, jax.default_backend())
    out = dot_product_attention(query, key, value, implementation, self.causal)
    projected = nn.DenseGeneral(
      width,
      axis=(-2, -1),
      dtype=self.dtype,
      kernel_init=partitioned(
        nn.initializers.normal(stds["proj"]) if stds else _xavier,
        ("heads", "kv", "embed"),
      ),
      bias_init=partitioned(nn.initializers.zeros, ("embed",)),
      name="proj",
    )(out)
    return _adapted(projected, out, self.lora, (width,), 2, self.dtype, "proj_lora")


def init_stds(scheme: str, width: int, layers: int) -> dict | None:
  """The standard deviations of the normal init of a block's linear layers ({"attn": qkv, "proj": attention
  output, "fc1", "fc2": the MLP's}) for a tower of `layers` blocks, or None for Xavier ("xavier": MAE's ViT).

  - "clip": openai/CLIP `initialize_parameters` (text tower): qkv width^-0.5, the attention output and fc2
    width^-0.5 (2 layers)^-0.5, fc1 (2 width)^-0.5.
  - "gpt2": GPT-2 (openai/gpt-2, nanoGPT): 0.02, the residual projections (attention output, fc2) 0.02 / sqrt(2
    layers).
  - "bert": BERT (google-research/bert, HF `_init_weights`): 0.02 everywhere.
  """
  if scheme == "xavier":
    return None
  if scheme == "clip":
    proj = width**-0.5 * (2 * layers) ** -0.5
    return {"attn": width**-0.5, "proj": proj, "fc1": (2 * width) ** -0.5, "fc2": proj}
  if scheme == "gpt2":
    proj = 0.02 / (2 * layers) ** 0.5
    return {"attn": 0.02, "proj": proj, "fc1": 0.02, "fc2": proj}
  if scheme == "bert":
    return dict.fromkeys(("attn", "proj", "fc1", "fc2"), 0.02)
  raise ValueError(f"init_stds: unknown scheme {scheme!r} (xavier, clip, gpt2, bert)")


def dense(features: int, names, dtype, name: str, std: float | None = None):
  """A linear layer, Xavier-initialised (or N(0, std^2)), whose kernel has logical axes `names` (bias: the last of
  them, zeros)."""
  return nn.Dense(
    features,
    dtype=dtype,
    kernel_init=partitioned(_xavier if std is None else nn.initializers.normal(std), names),
    bias_init=partitioned(nn.initializers.zeros, names[-1:]),
    name=name,
  )


def layer_norm(dtype, name: str | None = None):
  """LayerNorm with the reference's epsilon (1e-6) over an "embed" axis."""
  return nn.LayerNorm(
    epsilon=1e-6,
    dtype=dtype,
    scale_init=partitioned(nn.initializers.ones, ("embed",)),
    bias_init=partitioned(nn.initializers.zeros, ("embed",)),
    name=name,
  )


class Block(nn.Module):
  """Pre-norm transformer block; `drop_path` drops the whole residual branch per example (stochastic depth)."""

  num_heads: int
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  lora: tuple | None = None  # (rank, alpha): LoRA on every linear layer of the block.
  qkv_init: str = "fused"
  causal: bool = False
  init_scheme: str = "xavier"  # See Attention.
  init_depth: int = 0

  @nn.compact
  def __call__(self, x, train: bool = True):
    width, hidden = x.shape[-1], int(x.shape[-1] * self.mlp_ratio)
    stds = init_stds(self.init_scheme, width, self.init_depth) or {}
    drop = nn.Dropout(self.drop_path, broadcast_dims=(1, 2), deterministic=not train or self.drop_path == 0)
    attention = Attention(
      self.num_heads, self.dtype, self.lora, self.qkv_init, self.causal, self.init_scheme, self.init_depth, name="attn"
    )
    x = x + drop(attention(layer_norm(self.dtype, "norm1")(x)))
    y = layer_norm(self.dtype, "norm2")(x)
    fc1 = dense(hidden, ("embed", "mlp"), self.dtype, "fc1", stds.get("fc1"))
    h = _adapted(fc1(y), y, self.lora, (hidden,), 1, self.dtype, "fc1_lora")
    h = nn.gelu(h, approximate=False)
    fc2 = dense(width, ("mlp", "embed"), self.dtype, "fc2", stds.get("fc2"))
    y = _adapted(fc2(h), h, self.lora, (width,), 1, self.dtype, "fc2_lora")
    return x + drop(y)


class PositionEmbedding(nn.Module):
  """[L, width] position embedding of L patch tokens on a square grid: the fixed 2D sin-cos table (any L, e.g.
  DINO's local crops), or a parameter initialised to it (`learned`, for one L)."""

  width: int
  learned: bool = False

  @nn.compact
  def __call__(self, num_patches: int):
    table = sincos_pos_embed_2d(self.width, square_grid_size(num_patches))
    if not self.learned:
      return table
    return self.param("table", partitioned(lambda *_: jnp.asarray(table), (None, "embed")), table.shape)


class Transformer(nn.Module):
  """`depth` blocks; stochastic-depth rates rise linearly from 0 to `drop_path` (as in timm/DeiT)."""

  depth: int
  num_heads: int
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  lora: tuple | None = None
  qkv_init: str = "fused"
  causal: bool = False
  init_scheme: str = "xavier"  # Or CLIP's, GPT-2's or BERT's (`init_stds`).

  @nn.compact
  def __call__(self, x, train: bool = True, last_blocks: int | None = None):
    """The last block's output, or with `last_blocks` = n the list of the last n blocks' outputs."""
    outputs = []
    for i, rate in enumerate(np.linspace(0.0, self.drop_path, self.depth)):
      block = Block(
        self.num_heads,
        self.mlp_ratio,
        float(rate),
        self.dtype,
        self.lora,
        self.qkv_init,
        self.causal,
        self.init_scheme,
        self.depth,
        name=f"blocks_{i}",
      )
      x = block(x, train)
      outputs.append(x)
    return x if last_blocks is None else outputs[-last_blocks:]


class ViT(nn.Module):
  """ViT trunk: images [N, H, W, C] -> features [N, width].

  The steps are exposed separately so that MAE can drop tokens between them: `embed_patches` (patch embedding
  plus position embedding, [N, L, width]), then `encode_tokens` (class token, blocks, final norm,
  [N, 1 + L', width]) on any subset of the L tokens.

  Attributes:
    pool: "cls" (the normalised class token; MAE's linear-probe features) or "mean" (the mean of the patch tokens
      through a fresh `fc_norm`; MAE's fine-tuning default, which replaces the final norm).
    drop_path: stochastic-depth rate of the last block (fine-tuning; 0 for pretraining).
    learned_pos_embed: the position embedding is a parameter (initialised to the 2D sin-cos values, zeros for the
      class token) instead of the fixed sin-cos table: MAE's fine-tuning trains it, its pretraining does not.
    lora: (rank, alpha): a `LoRA` branch on every linear layer of the blocks (qkv, output projection, MLP).
    qkv_init: "fused" (MAE) or "separate" (moco-v3): see `QKV_INITS`.
    cls_token_std: the class token's initial N(0, std^2) (MAE 0.02, moco-v3 1e-6).
    cls_blocks, patch_mean: with pool="cls", the features are the normalised class tokens of the last
      `cls_blocks` blocks, concatenated, and with `patch_mean` also the mean of the last block's normalised patch
      tokens: DINO's linear evaluation (ViT-S/16: 4 blocks; ViT-B/16: 1 block and the patch mean). They add no
      parameters, so an encoder trained with the defaults evaluates with any of them.
  """

  patch_size: int
  width: int
  depth: int
  num_heads: int
  mlp_ratio: float = 4.0
  pool: str = "cls"
  drop_path: float = 0.0
  learned_pos_embed: bool = False
  lora: tuple | None = None
  qkv_init: str = "fused"
  cls_token_std: float = 0.02
  cls_blocks: int = 1
  patch_mean: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    self.patch_embed = dense(self.width, ("patch", "embed"), self.dtype, "patch_embed")
    self.cls_token = self.param(
      "cls_token", partitioned(nn.initializers.normal(self.cls_token_std), (None, None, "embed")), (1, 1, self.width)
    )
    self.transformer = Transformer(
      self.depth, self.num_heads, self.mlp_ratio, self.drop_path, self.dtype, self.lora, self.qkv_init
    )
    self.position = PositionEmbedding(self.width, self.learned_pos_embed, name="pos_embed")
    if self.learned_pos_embed:
      self.cls_pos_embed = self.param("cls_pos_embed", nn.initializers.zeros, (1, 1, self.width))
    if self.pool == "cls":
      self.norm = layer_norm(self.dtype)
    elif self.pool == "mean":
      self.fc_norm = layer_norm(self.dtype)
    else:
      raise ValueError(f"pool must be 'cls' or 'mean', got {self.pool!r}")

  @property
  def feature_dim(self) -> int:
    return self.width * (self.cls_blocks + self.patch_mean) if self.pool == "cls" else self.width

  def embed_patches(self, images):
    tokens = self.patch_embed(patchify(images, self.patch_size))
    return tokens + self.position(tokens.shape[1]).astype(tokens.dtype)

  def _with_class_token(self, tokens):
    """The class token (position embedding 0) prepended to [N, L', width] tokens."""
    cls = self.cls_token + self.cls_pos_embed if self.learned_pos_embed else self.cls_token
    cls = jnp.broadcast_to(cls.astype(tokens.dtype), (tokens.shape[0], 1, self.width))
    return jnp.concatenate([cls, tokens], axis=1)

  def encode_tokens(self, tokens, train: bool = True):
    """[N, L', width] position-embedded tokens -> [N, 1 + L', width]; the class token comes first. With
    pool="mean" the output is not normalised (only the pooled vector is)."""
    x = self.transformer(self._with_class_token(tokens), train)
    return self.norm(x) if self.pool == "cls" else x

  def __call__(self, images, train: bool = True):
    tokens = self._with_class_token(self.embed_patches(images))
    if self.pool == "mean":
      return self.fc_norm(self.transformer(tokens, train)[:, 1:].mean(axis=1))
    outputs = self.transformer(tokens, train, last_blocks=self.cls_blocks)
    features = [self.norm(x[:, 0]) for x in outputs]
    if self.patch_mean:
      features.append(self.norm(outputs[-1][:, 1:]).mean(axis=1))
    return features[0] if len(features) == 1 else jnp.concatenate(features, axis=-1)
