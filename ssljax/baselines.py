"""The baselines self-supervised features are compared with (`config.eval_baselines`): a featurizer each, images
[N, H, W, C] -> features [N, D].

- "raw_pixels": the flattened pixels; for text "bag_of_tokens", each row's token frequencies.
- "random_init": the same encoder as the method's, randomly initialised, as a fair random network: the encoder's
  initial parameters, except that BatchNorm scales initialised to zero (the "zero-init residual" trick of SimCLR's
  and Goyal et al.'s ResNets, which makes every residual block start as the identity) are set to 1, and the
  BatchNorm statistics are estimated on training images. With zero scales the residual branches of a random
  ResNet output exactly 0 and its "random features" are those of the stem and the shortcuts alone; with the
  initial statistics (mean 0, variance 1) eval-mode BatchNorm does not normalise anything.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data
from ssljax.train_step import Trainer, encoder_variables

MAX_STATISTICS_BATCHES = 10  # Batches of training images the random network's BatchNorm statistics come from.


def raw_pixels():
  return jax.jit(lambda images: images.reshape(images.shape[0], -1))


def bag_of_tokens(config):
  """Text's raw input: each row's token frequencies over the vocabulary [N, V] (special tokens left out), the
  features of a bag-of-words classifier."""
  from ssljax import text

  tokenizer = text.load_tokenizer(config.text.tokenizer)
  vocab, specials = text.vocab_size(tokenizer), jnp.asarray(text.special_ids(tokenizer))

  def featurize(tokens):
    counts = jax.vmap(lambda row: jnp.zeros(vocab).at[row].add(1.0))(tokens).at[:, specials].set(0.0)
    return counts / jnp.maximum(counts.sum(-1, keepdims=True), 1.0)

  return jax.jit(featurize)


def _unit_scales(params):
  """Every BatchNorm scale that is all zeros (zero-initialised) set to ones."""

  def fix(path, x):
    return jnp.ones_like(x) if getattr(path[-1], "key", None) == "scale" and not jnp.any(x) else x

  return jax.tree_util.tree_map_with_path(fix, params)


def random_network_variables(encoder, variables: dict, batches) -> dict:
  """`variables` of `encoder` made a fair random network: zero BatchNorm scales set to 1, then each BatchNorm's
  running mean and variance set to the average over `batches` (images) of its train-mode batch statistics (as
  torch.optim.swa_utils.update_bn), so that eval mode normalises as train mode would on training data."""
  variables = {**variables, "params": _unit_scales(variables["params"])}
  if "batch_stats" not in variables:
    return variables
  # Momentum 0: the running statistics after one train-mode pass are exactly that batch's statistics.
  measure = jax.jit(
    lambda v, x: encoder.clone(bn_momentum=0.0).apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]
  )
  statistics = [measure(variables, images) for images in batches]
  if not statistics:
    raise ValueError("random_network_variables: no batch of images to estimate BatchNorm statistics from")
  mean = jax.tree.map(lambda *s: sum(s) / len(s), *statistics)
  return {**variables, "batch_stats": mean}


def random_init_variables(trainer: Trainer, initial_variables: dict, train_source, batch_size: int) -> dict:
  """The encoder's part of `initial_variables` (a freshly initialised model's evaluation variables) made a fair
  random network on up to MAX_STATISTICS_BATCHES batches of `batch_size` (unaugmented) training images."""
  devices = jax.device_count()
  batch_size = min(batch_size, len(train_source) // devices * devices)

  to_encoder = trainer.method.encoder_input or (lambda images: images)

  def images(b):
    indices = np.arange(b * batch_size, (b + 1) * batch_size).reshape(jax.process_count(), -1)[jax.process_index()]
    local = data.read_examples(train_source, indices)
    return to_encoder(data.model_input(data.global_batch(local, trainer.batch_sharding)))

  variables = encoder_variables(initial_variables)
  batches = (images(b) for b in range(min(MAX_STATISTICS_BATCHES, len(train_source) // max(batch_size, 1))))
  return random_network_variables(trainer.method.model.encoder, variables, batches)
