"""Held-out perplexity of a language model (GPT, BERT) against a unigram model of the training text.

Perplexity = exp(mean negative log-likelihood per predicted token) over the test split, on the positions the
method predicts: every next token for GPT; for BERT the positions its masking selects (drawn as in training, with
a fixed seed per batch, as HF's `run_mlm` evaluates). The unigram baseline predicts every position by the
training text's token frequencies (add-one smoothed), on exactly the same positions."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data


def unigram_log_probs(counts: np.ndarray) -> np.ndarray:
  """float32 [V]: log of the add-one-smoothed unigram distribution of `counts` (PAD's count ignored)."""
  counts = np.asarray(counts, np.float64).copy()
  counts[0] = 0
  return np.log((counts + 1) / (counts + 1).sum()).astype(np.float32)


def run(context, max_examples: int = 0, seed: int = 0) -> dict:
  """{"perplexity/ssl/test", "perplexity/unigram/test"}: the model's and the unigram's held-out perplexity."""
  config = context.config
  source = data.fixed_subset(context.test_source, max_examples, seed) if max_examples else context.test_source
  counts = data.token_counts(context.train_source, config)
  unigram = jnp.asarray(unigram_log_probs(counts))
  batch_size = config.eval_batch_size

  @jax.jit
  def sums(variables, batch, valid, key):
    inputs = context.method.make_inputs(batch, key)
    logits = context.model.apply(variables, inputs["tokens"], method="predict")
    log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), inputs["targets"][..., None], axis=-1)[..., 0]
    rows = (jnp.arange(inputs["weights"].shape[0]) < valid)[:, None]
    weights = inputs["weights"].astype(jnp.float32) * rows
    return -jnp.sum(log_probs * weights), -jnp.sum(unigram[inputs["targets"]] * weights), jnp.sum(weights)

  totals = np.zeros(3)
  batches = data.eval_batches(source, batch_size, context.batch_sharding)
  for index, (batch, valid) in enumerate(batches):
    key = jax.random.fold_in(jax.random.key(seed), index)
    totals += np.asarray(jax.device_get(sums(context.variables, batch, valid, key)), np.float64)
  model_nll, unigram_nll, count = totals
  if count == 0:
    raise ValueError("perplexity: the test split has no position to predict")
  return {
    "perplexity/ssl/test": float(np.exp(model_nll / count)),
    "perplexity/unigram/test": float(np.exp(unigram_nll / count)),
  }
