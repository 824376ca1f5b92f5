"""What the text methods share (GPT, BERT, word2vec): rows of `config.text.context_length` tokens from a text
dataset (`data.TokenSource`), the tokenizer of `config.text.tokenizer`, and for the transformers the encoder of
`config.text` (width, depth, num_heads) with its language-model loss."""

import jax.numpy as jnp

from ssljax import losses, text
from ssljax.config import ConfigError
from ssljax.methods import Method
from ssljax.models.language import PAD_ID, LanguageModel, TextTransformer


def tokenizer_of(config):
  if config.get("text") is None:
    raise ConfigError(f"config.text: missing (method {config.method!r} needs a tokenizer and a context_length)")
  return text.load_tokenizer(config.text.tokenizer)


def text_batch(config) -> dict:
  """`Method.extra_batch` of a text method: the rows' tokens."""
  return {"text": ((config.text.context_length,), jnp.int32)}


def language_model(config, *, causal: bool, head: str, init_scheme: str, pos_std: float) -> LanguageModel:
  """The transformer of `config.text` with its output layer; `config.text.causal`, when given, must agree."""
  tokenizer = tokenizer_of(config)
  section = config.text
  if section.get("causal") is not None and section.causal != causal:
    raise ConfigError(f"config.text.causal: {section.causal}, but method {config.method!r} is causal={causal}")
  encoder = TextTransformer(
    text.vocab_size(tokenizer),
    section.context_length,
    section.width,
    section.depth,
    section.num_heads,
    causal=causal,
    eos_id=text.eos_id(tokenizer),
    dtype=jnp.dtype(config.dtype),
    init_scheme=init_scheme,
    pool="mean",
    pos_std=pos_std,
  )
  return LanguageModel(encoder, head)


def token_loss(outputs, batch, step):
  """`losses.token_cross_entropy` of the model's logits, with the predicted tokens' accuracy and perplexity."""
  del batch, step
  logits, targets, weights = outputs["logits"], outputs["targets"], outputs["weights"].astype(jnp.float32)
  loss = losses.token_cross_entropy(logits, targets, weights)
  hits = jnp.sum((jnp.argmax(logits, -1) == targets) * weights) / jnp.maximum(jnp.sum(weights), 1.0)
  return loss, {"token_accuracy": hits, "perplexity": jnp.exp(loss), "predicted_tokens": jnp.sum(weights)}


def language_method(config, model, make_inputs) -> Method:
  return Method(
    model=model, make_inputs=make_inputs, loss=token_loss, views_per_image=1, extra_batch=text_batch(config)
  )


def next_tokens(tokens):
  """(targets, weights) of next-token prediction: position t predicts token t + 1 (the last position nothing), PAD
  never counts."""
  targets = jnp.concatenate([tokens[:, 1:], jnp.full_like(tokens[:, :1], PAD_ID)], axis=1)
  return targets, targets != PAD_ID
