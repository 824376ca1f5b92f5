"""Transformers over token sequences, built from the ViT's blocks (one transformer, several uses): CLIP's text tower,
GPT's causal language model and BERT's masked one, and word2vec's skip-gram vectors.

Token id 0 is PAD (the tail of a packed text, `text.pack`); the special tokens (PAD, EOS, MASK, UNK) are no
words. Parameters carry logical axis names as the ViT's do."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.models.vit import Transformer, layer_norm, partitioned

PAD_ID = 0


class TextTransformer(nn.Module):
  """Token ids [N, L] -> features [N, width]: token embedding N(0, 0.02^2) plus a learned position embedding
  N(0, `pos_std`^2) (CLIP and GPT-2: 0.01; BERT: 0.02), pre-norm blocks (the ViT's, initialised by `init_scheme`:
  `vit.init_stds`; biases zero, LayerNorm eps 1e-6, exact GELU), a final LayerNorm, then pooled: at the first
  token `eos_id` (CLIP's pooling) or the mean over the non-PAD tokens ("mean": GPT's and BERT's features here,
  as iGPT's average pooling). `causal`: position t attends to t and the positions before it (CLIP's text tower,
  GPT); otherwise to every position (SigLIP, BERT). `sequence` gives the unpooled [N, L, width]."""

  vocab_size: int
  context_length: int
  width: int
  depth: int
  num_heads: int
  causal: bool = True
  eos_id: int = 1
  dtype: Any = jnp.float32
  init_scheme: str = "clip"
  pool: str = "eos"
  pos_std: float = 0.01

  def setup(self):
    self.token_embed = nn.Embed(
      self.vocab_size,
      self.width,
      embedding_init=partitioned(nn.initializers.normal(0.02), ("vocab", "embed")),
      dtype=self.dtype,
    )
    self.pos_embed = self.param(
      "pos_embed",
      partitioned(nn.initializers.normal(self.pos_std), (None, "embed")),
      (self.context_length, self.width),
    )
    self.transformer = Transformer(
      self.depth, self.num_heads, dtype=self.dtype, causal=self.causal, init_scheme=self.init_scheme
    )
    self.norm = layer_norm(self.dtype)

  def sequence(self, tokens, train: bool = True):
    """[N, L] -> [N, L, width], after the final LayerNorm."""
    if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
      raise ValueError(f"TextTransformer: tokens must be [N, <= {self.context_length}], got {tokens.shape}")
    x = self.token_embed(tokens) + self.pos_embed[: tokens.shape[1]].astype(self.dtype)
    return self.norm(self.transformer(x, train))

  def __call__(self, tokens, train: bool = True):
    x = self.sequence(tokens, train)
    if self.pool == "mean":
      return masked_mean(x, tokens != PAD_ID)
    eos = jnp.argmax(tokens == self.eos_id, axis=1)  # The first EOS (CLIP: argmax of the ids, EOT being the last).
    return jnp.take_along_axis(x, eos[:, None, None], axis=1)[:, 0]

  def attend(self, x):
    """x [..., width] -> logits [..., vocab] against the token embeddings (tied output layer)."""
    return self.token_embed.attend(x)

  def word_vectors(self):
    return self.token_embed.embedding


def is_word(tokens, special_ids: tuple):
  """bool like `tokens`: the tokens that are none of `special_ids` (PAD, EOS, MASK, UNK)."""
  return ~jnp.isin(tokens, jnp.asarray(special_ids, tokens.dtype))


def masked_mean(x, mask):
  """x [N, L, D], mask [N, L] -> [N, D]: the mean over the positions where `mask` holds (0 where none does)."""
  weights = mask.astype(x.dtype)[..., None]
  return jnp.sum(x * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


class LanguageModel(nn.Module):
  """A `TextTransformer` and its output layer over the vocabulary, tied to the token embeddings: GPT-2's (`head`
  "tied": logits = h E^T) or BERT's MLM head ("mlm": dense, GELU, LayerNorm, then h E^T + b).

  inputs {"tokens" [N, L] (what the encoder reads: masked for BERT), "targets" [N, L] (the token to predict at
  each position), "weights" [N, L] (1 where a prediction counts)} -> {"features" (mean-pooled, for the online
  probe), "logits" float32 [N, L, vocab], "targets", "weights"}."""

  encoder: TextTransformer
  head: str = "tied"

  def setup(self):
    if self.head == "mlm":
      width, dtype = self.encoder.width, self.encoder.dtype
      self.transform = nn.Dense(
        width,
        dtype=dtype,
        kernel_init=partitioned(nn.initializers.normal(0.02), ("embed", "mlp")),
        bias_init=partitioned(nn.initializers.zeros, ("mlp",)),
      )
      self.transform_norm = layer_norm(dtype)
      vocab = self.encoder.vocab_size
      self.output_bias = self.param("output_bias", partitioned(nn.initializers.zeros, ("vocab",)), (vocab,))

  def logits(self, tokens, train: bool):
    hidden = self.encoder.sequence(tokens, train)
    features = masked_mean(hidden, tokens != PAD_ID)
    if self.head == "mlm":
      hidden = self.transform_norm(nn.gelu(self.transform(hidden), approximate=False))
      return features, self.encoder.attend(hidden).astype(jnp.float32) + self.output_bias
    return features, self.encoder.attend(hidden).astype(jnp.float32)

  def __call__(self, inputs, train: bool = True):
    features, logits = self.logits(inputs["tokens"], train)
    return {"features": features, "logits": logits, "targets": inputs["targets"], "weights": inputs["weights"]}

  def encode(self, tokens):
    return self.encoder(tokens, train=False)

  def predict(self, tokens):
    """Inference-mode logits, float32 [N, L, vocab] (perplexity, sampling)."""
    return self.logits(tokens, train=False)[1]

  def word_vectors(self):
    return self.encoder.word_vectors()


def sample(predict, tokens, prompt_length: int, key, temperature: float = 1.0):
  """Continues every row of `tokens` [N, L] (its first `prompt_length` tokens the prompt; the rest is overwritten)
  one token at a time to length L, drawing token t from softmax(logits at t - 1 / temperature) (`temperature` 0:
  the argmax). `predict`: tokens [N, L] -> logits [N, L, V] of a causal model, which makes the positions after t
  irrelevant to the logits at t. Returns the rows [N, L]; a row's text ends at its first EOS."""

  def step(t, carry):
    tokens, key = carry
    key, draw = jax.random.split(key)
    logits = jax.lax.dynamic_index_in_dim(predict(tokens), t - 1, axis=1, keepdims=False)
    if temperature == 0:
      chosen = jnp.argmax(logits, axis=-1)
    else:
      chosen = jax.random.categorical(draw, logits / temperature, axis=-1)
    return tokens.at[:, t].set(chosen.astype(tokens.dtype)), key

  tokens, _ = jax.lax.fori_loop(prompt_length, tokens.shape[1], step, (tokens, key))
  return tokens


class WordVectors(nn.Module):
  """word2vec's input vectors (Mikolov et al. 2013; `syn0` of word2vec.c, initialised U(-0.5 / dim, 0.5 / dim)):
  token ids [N, L] -> the mean vector of each row's words (tokens not in `special_ids`) [N, dim]."""

  vocab_size: int
  dim: int
  special_ids: tuple = (0,)

  def setup(self):
    bound = 0.5 / self.dim
    self.embed = nn.Embed(
      self.vocab_size,
      self.dim,
      embedding_init=partitioned(
        lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound), ("vocab", "embed")
      ),
    )

  def __call__(self, tokens, train: bool = True):
    del train
    return masked_mean(self.embed(tokens), is_word(tokens, self.special_ids))

  def vectors(self, ids):
    return self.embed(ids)

  def word_vectors(self):
    return self.embed.embedding


class SkipGram(nn.Module):
  """Skip-gram with negative sampling: each (centre, context) pair scores the centre's input vector against the
  context's output vector and `negatives` noise words' output vectors (`syn1neg`, zero-initialised as in
  word2vec.c).

  inputs {"tokens" [N, L], "centres", "contexts" [N, P], "negatives" [N, P, K], "pair_weights" [N, P],
  "negative_weights" [N, P, K]} -> {"features" [N, dim], "positive_logits" [N, P], "negative_logits" [N, P, K],
  and the weights}."""

  encoder: WordVectors

  def setup(self):
    self.context_vectors = nn.Embed(
      self.encoder.vocab_size,
      self.encoder.dim,
      embedding_init=partitioned(nn.initializers.zeros, ("vocab", "embed")),
    )

  def __call__(self, inputs, train: bool = True):
    centre = self.encoder.vectors(inputs["centres"])  # [N, P, D]
    positive = jnp.sum(centre * self.context_vectors(inputs["contexts"]), axis=-1)
    negative = jnp.einsum("npd,npkd->npk", centre, self.context_vectors(inputs["negatives"]))
    return {
      "features": self.encoder(inputs["tokens"]),
      "positive_logits": positive,
      "negative_logits": negative,
      "pair_weights": inputs["pair_weights"],
      "negative_weights": inputs["negative_weights"],
    }

  def encode(self, tokens):
    return self.encoder(tokens, train=False)

  def word_vectors(self):
    return self.encoder.word_vectors()
