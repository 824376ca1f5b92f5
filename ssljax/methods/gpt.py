"""GPT-style next-token prediction (Radford et al. 2018, 2019): a causal transformer over packed token rows, each
position predicting the next token through the output layer tied to the token embeddings, GPT-2's
initialisation (0.02, residual projections 0.02 / sqrt(2 depth), positions 0.01). Its features for evaluation
are the mean of the last LayerNorm's outputs over a row's tokens (iGPT's average pooling)."""

from ssljax.methods import Method, language


def make_inputs(batch, key):
  del key  # Next-token prediction needs no randomness.
  tokens = batch["text"]
  targets, weights = language.next_tokens(tokens)
  return {"tokens": tokens, "targets": targets, "weights": weights}


DATA = "text"  # Trains on text datasets (config_checks.method_data).


def build(config, info) -> Method:
  del info
  model = language.language_model(config, causal=True, head="tied", init_scheme="gpt2", pos_std=0.01)
  return language.language_method(config, model, make_inputs)
