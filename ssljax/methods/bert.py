"""BERT-style masked language modelling (Devlin et al. 2019): a bidirectional transformer reads rows in which 15% of
the tokens are selected (never PAD, EOS or another special token); of those 80% become MASK, 10% a random word
and 10% stay as they are; the loss is the cross-entropy on the selected positions only, through BERT's head
(dense, GELU, LayerNorm, output layer tied to the token embeddings plus a bias) and BERT's initialisation (0.02).
Masks are drawn afresh at every step (RoBERTa's dynamic masking; a position is selected with probability 0.15, as
HF's `DataCollatorForLanguageModeling`). The blocks are pre-norm (the ViT's and GPT-2's; BERT's own are post-norm)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import text
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, language
from ssljax.models.language import is_word

DATA = "text"  # Trains on text datasets (config_checks.method_data).
SCHEMA = {"mask_rate": NUMBER, "mask_token_rate": NUMBER, "random_token_rate": NUMBER}


def mask_tokens(
  key, tokens, *, special_ids: tuple, vocab_size: int, mask_id: int, rate=0.15, to_mask=0.8, to_random=0.1
):
  """BERT's corruption of token rows [N, L] -> (corrupted rows, selected bool [N, L]).

  Each token that is a word (not one of `special_ids`) is selected with probability `rate`; a selected token
  becomes `mask_id` with probability `to_mask`, a word drawn uniformly from the vocabulary's words with probability
  `to_random`, and stays itself otherwise."""
  select_key, how_key, word_key = jax.random.split(key, 3)
  words = jnp.asarray(np.setdiff1d(np.arange(vocab_size), special_ids), tokens.dtype)
  selected = (jax.random.uniform(select_key, tokens.shape) < rate) & is_word(tokens, special_ids)
  how = jax.random.uniform(how_key, tokens.shape)
  random_words = words[jax.random.randint(word_key, tokens.shape, 0, len(words))]
  corrupted = jnp.where(how < to_mask, mask_id, jnp.where(how < to_mask + to_random, random_words, tokens))
  return jnp.where(selected, corrupted, tokens), selected


def make_inputs(batch, key, **masking):
  tokens = batch["text"]
  corrupted, selected = mask_tokens(key, tokens, **masking)
  return {"tokens": corrupted, "targets": tokens, "weights": selected}


def build(config, info) -> Method:
  del info
  section = config.bert
  for key in SCHEMA:
    if not 0 <= section[key] <= 1:
      raise ConfigError(f"config.bert.{key}: {section[key]} is not a probability in [0, 1]")
  if section.mask_token_rate + section.random_token_rate > 1:
    raise ConfigError(
      f"config.bert.random_token_rate: {section.random_token_rate} + mask_token_rate {section.mask_token_rate} > 1"
    )
  tokenizer = language.tokenizer_of(config)
  try:
    mask_id = text.mask_id(tokenizer)
  except ValueError as error:
    raise ConfigError(f"config.text.tokenizer: {config.text.tokenizer!r}: {error}") from None
  model = language.language_model(config, causal=False, head="mlm", init_scheme="bert", pos_std=0.02)
  masking = dict(
    mask_id=mask_id,
    special_ids=tuple(text.special_ids(tokenizer)),
    vocab_size=text.vocab_size(tokenizer),
    rate=section.mask_rate,
    to_mask=section.mask_token_rate,
    to_random=section.random_token_rate,
  )
  return language.language_method(config, model, functools.partial(make_inputs, **masking))
