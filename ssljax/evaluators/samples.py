"""Samples from a causal language model (GPT), as the lectures show them: each prompt continued with temperature
sampling to the row length, written to WORKDIR/samples.txt, with the share of distinct tokens among the generated
ones (distinct-1, Li et al. 2016: a model that repeats itself scores low)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ssljax import paths, text
from ssljax.models.language import sample

PROMPTS = ("The with statement", "A class definition", "If the exception")


def run(context, prompts=PROMPTS, temperature: float = 0.8, samples_per_prompt: int = 2, seed: int = 0) -> dict:
  """{"samples/ssl/distinct_tokens"}; WORKDIR/samples.txt holds the prompts and their continuations."""
  tokenizer = text.load_tokenizer(context.config.text.tokenizer)
  length, eos = context.config.text.context_length, text.eos_id(tokenizer)
  predict = functools.partial(context.model.apply, method="predict")
  generate = jax.jit(
    lambda variables, tokens, key, prompt_length: sample(
      functools.partial(predict, variables), tokens, prompt_length, key, temperature
    ),
    static_argnums=3,
  )
  lines, generated = [], []
  for number, prompt in enumerate(prompts):
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids[: length - 1]
    tokens = jnp.zeros((samples_per_prompt, length), jnp.int32).at[:, : len(ids)].set(jnp.asarray(ids, jnp.int32))
    rows = np.asarray(generate(context.variables, tokens, jax.random.fold_in(jax.random.key(seed), number), len(ids)))
    for row in rows:
      continuation = list(row[len(ids) :])
      continuation = continuation[: continuation.index(eos)] if eos in continuation else continuation
      generated.extend(continuation)
      lines.append(f"{prompt!r} -> {tokenizer.decode([int(t) for t in continuation])!r}")
  report = f"temperature {temperature}\n" + "\n".join(lines)
  logging.info("samples:\n%s", report)
  if jax.process_index() == 0:
    paths.write_atomic(paths.resolve(context.workdir) / "samples.txt", report + "\n")
  return {"samples/ssl/distinct_tokens": len(set(generated)) / max(len(generated), 1)}
