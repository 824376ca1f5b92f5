"""A trained run's encoder, for use outside ssljax's own evaluation:

  encoder, variables, preprocess = ssljax.load_encoder("WORKDIR")
  features = encoder.apply(variables, preprocess(uint8_images), train=False)  # [N, D]

(`python -m ssljax.embed` writes the features of a whole dataset.)"""

import functools

import numpy as np

from ssljax import checkpoint, data, experiment, sharding, text
from ssljax.config import ConfigError
from ssljax.train_step import build_trainer, encoder_variables, eval_variables


def restore_run(workdir: str):
  """(config, trainer, eval variables of the newest checkpoint) of the run in `workdir`."""
  config = experiment.load_config(workdir)
  mesh = sharding.make_mesh(config.get("mesh", sharding.DEFAULT_MESH))
  manager = checkpoint.make_manager(workdir, read_only=True)
  probe = checkpoint.saved_shape(manager, "params/probe/kernel")  # The state's shapes depend on the class count.
  # Loading runs no step: text methods get uniform word counts (they shape only word2vec's sampling).
  counts = (
    np.ones(text.vocab_size(text.load_tokenizer(config.text.tokenizer))) if data.is_text(config.dataset) else None
  )
  trainer = build_trainer(config, mesh, config.batch_size, probe[-1] if probe else 0, counts)
  state = experiment.restore(config, workdir, trainer, manager, read_only=True)
  if state is None:
    raise ConfigError(f"--workdir: {workdir} holds no checkpoint")
  return config, trainer, eval_variables(state, trainer.method)


def load_encoder(workdir: str):
  """(encoder, variables, preprocess) of the newest checkpoint in `workdir`: the Flax module and its variables
  (`encoder.apply(variables, images, train=False)` -> [N, D] features, as the evaluators compute them) and
  `preprocess`, uint8 images ([N, H, W, C] or a list of any sizes) -> the float32 [N, S, S, C] input it expects
  (a text run's: strings -> the int32 [N, context_length] token rows it reads)."""
  config, trainer, variables = restore_run(workdir)
  dataset = config.dataset
  if data.is_text(dataset):  # Text runs: strings -> int32 [N, context_length] token rows.
    tokenizer = text.load_tokenizer(config.text.tokenizer)
    preprocess = functools.partial(text.tokenize, length=config.text.context_length, tokenizer=tokenizer)
    return trainer.method.model.encoder, encoder_variables(variables), preprocess
  preprocess = functools.partial(data.preprocess, size=dataset.image_size, center_crop=dataset.get("center_crop", 1.0))
  return trainer.method.model.encoder, encoder_variables(variables), preprocess
