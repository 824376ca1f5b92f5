"""word2vec (Mikolov et al. 2013): skip-gram with negative sampling over the words of packed text rows, as
word2vec.c trains it:
- frequent words are subsampled: a word of frequency f is kept with probability (sqrt(f / t) + 1) t / f (the
  code's form of the paper's 1 - sqrt(t / f) discard rate), before the windows are formed, as are non-words;
- each centre word takes a window of b words on each side, b uniform in 1..`window` (the code's reduced window);
- each (centre, context) pair draws `negatives` noise words from unigram^0.75, skipping a noise word equal to the
  context word.
The vectors evaluation reads are the input vectors (`syn0`); a row's features are the mean of its words' vectors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses, text
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method, language
from ssljax.models.language import SkipGram, WordVectors, is_word

DATA = "text"  # Trains on text datasets (config_checks.method_data).
SCHEMA = {"dim": int, "window": int, "negatives": int, "subsample": NUMBER, "noise_power": NUMBER}


def keep_probabilities(counts: np.ndarray, special_ids, subsample: float) -> np.ndarray:
  """float32 [V]: word2vec.c's probability of keeping each word, min(1, (sqrt(f / t) + 1) t / f) with f its share
  of the training words and t = `subsample` (0: keep every word); 0 for the special tokens."""
  counts = np.asarray(counts, np.float64).copy()
  counts[list(special_ids)] = 0
  if subsample <= 0:
    return (counts > 0).astype(np.float32)
  frequency = counts / max(counts.sum(), 1)
  with np.errstate(divide="ignore", invalid="ignore"):
    keep = (np.sqrt(frequency / subsample) + 1) * subsample / frequency
  return np.where(counts > 0, np.minimum(keep, 1.0), 0.0).astype(np.float32)


def noise_cdf(counts: np.ndarray, special_ids, power: float) -> np.ndarray:
  """float32 [V]: the cumulative distribution of unigram^power over the words (specials and unseen words 0)."""
  weights = np.asarray(counts, np.float64).copy()
  weights[list(special_ids)] = 0
  weights = weights**power * (weights > 0)
  if weights.sum() == 0:
    raise ConfigError("config.dataset: the training text has no words to draw word2vec's noise from")
  return np.cumsum(weights / weights.sum()).astype(np.float32)


def skipgram_pairs(key, tokens, *, keep, cdf, special_ids: tuple, window: int, negatives: int):
  """The training pairs of token rows [N, L]: {"centres", "contexts", "pair_weights" [N, L * 2 window],
  "negatives", "negative_weights" [N, L * 2 window, K]}.

  Per row, the kept words (`keep` [V] probabilities, non-words never) are moved to the front in order; centre
  position i with window b_i pairs with the kept words at i - b_i .. i + b_i other than itself."""
  n, length = tokens.shape
  keep_key, window_key, noise_key = jax.random.split(key, 3)
  kept = is_word(tokens, special_ids) & (jax.random.uniform(keep_key, tokens.shape) < keep[tokens])
  order = jnp.argsort(~kept, axis=1, stable=True)  # Kept words first, in their order.
  words = jnp.take_along_axis(tokens, order, axis=1)
  count = jnp.sum(kept, axis=1, keepdims=True)
  spans = jax.random.randint(window_key, (n, length), 1, window + 1)
  offsets = jnp.asarray([o for o in range(-window, window + 1) if o], jnp.int32)  # [2 window]
  positions = jnp.arange(length)[:, None] + offsets[None, :]  # [L, 2 window]
  valid = (
    (jnp.arange(length)[None, :, None] < count[:, :, None])
    & (positions[None] >= 0)
    & (positions[None] < count[:, :, None])
    & (jnp.abs(offsets)[None, None, :] <= spans[:, :, None])
  )
  contexts = jnp.take_along_axis(words, jnp.clip(positions, 0, length - 1).reshape(1, -1).repeat(n, 0), axis=1)
  contexts = contexts.reshape(n, length * len(offsets))
  centres = jnp.repeat(words, len(offsets), axis=1)
  uniform = jax.random.uniform(noise_key, (n, length * len(offsets), negatives))
  noise = jnp.minimum(jnp.searchsorted(cdf, uniform, side="right"), len(cdf) - 1).astype(tokens.dtype)
  return {
    "centres": centres,
    "contexts": contexts,
    "pair_weights": valid.reshape(n, -1),
    "negatives": noise,
    "negative_weights": noise != contexts[..., None],
  }


def make_inputs(batch, key, **pairs):
  return {"tokens": batch["text"], **skipgram_pairs(key, batch["text"], **pairs)}


def loss(outputs, batch, step):
  del batch, step
  value = losses.skipgram_negative_sampling_loss(
    outputs["positive_logits"], outputs["negative_logits"], outputs["pair_weights"], outputs["negative_weights"]
  )
  pairs = jnp.sum(outputs["pair_weights"])
  positive = jnp.sum(jax.nn.sigmoid(outputs["positive_logits"]) * outputs["pair_weights"]) / jnp.maximum(pairs, 1)
  return value, {"pairs": pairs, "positive_probability": positive}


def build(config, info) -> Method:
  section = config.word2vec
  for key in ("dim", "window", "negatives"):
    if section[key] < 1:
      raise ConfigError(f"config.word2vec.{key}: {section[key]} must be at least 1")
  if section.subsample < 0 or section.noise_power < 0:
    raise ConfigError("config.word2vec.subsample / noise_power: must be at least 0")
  tokenizer = language.tokenizer_of(config)
  if info.token_counts is None:
    raise ConfigError(f"config.method: {config.method!r} needs a text dataset (it samples by the words' counts)")
  specials = tuple(text.special_ids(tokenizer))
  vocab = text.vocab_size(tokenizer)
  counts = np.asarray(info.token_counts)
  model = SkipGram(WordVectors(vocab, section.dim, specials))
  pairs = dict(
    keep=jnp.asarray(keep_probabilities(counts, specials, section.subsample)),
    cdf=jnp.asarray(noise_cdf(counts, specials, section.noise_power)),
    special_ids=specials,
    window=section.window,
    negatives=section.negatives,
  )
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, **pairs),
    loss=loss,
    views_per_image=1,
    extra_batch=language.text_batch(config),
  )
