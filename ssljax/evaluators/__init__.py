"""Evaluators, chosen per entry of `config.evals` by `type=`, run on frozen features after training.

Every evaluator sees the same feature sets: "ssl" (the trained encoder) and the baselines named in
`config.eval_baselines`: "random_init" (the same encoder, randomly initialised) and "raw_pixels" (flattened
images), so that each SSL number is read against what no pretraining gives.
"""

import numpy as np
from jax.experimental import multihost_utils

from ssljax import data
from ssljax.config import require_choice
from ssljax.evaluators import linear_probe

EVALUATORS = {"linear_probe": linear_probe.evaluate}


def extract_features(featurizers: dict, source, batch_size: int, batch_sharding):
  """Runs each featurizer (jitted images -> [B, D]) over all of `source` in order.

  Returns ({name: [len(source), D] float32 on the host}, labels [len(source)] int32).
  """
  chunks = {name: [] for name in featurizers}
  labels = []
  for batch, valid in data.eval_batches(source, batch_size, batch_sharding):
    for name, featurize in featurizers.items():
      features = multihost_utils.process_allgather(featurize(batch["image"]), tiled=True)
      chunks[name].append(np.asarray(features[:valid], np.float32))
    labels.append(np.asarray(multihost_utils.process_allgather(batch["label"], tiled=True))[:valid])
  return {name: np.concatenate(c) for name, c in chunks.items()}, np.concatenate(labels)


def run_evaluators(evals_config, featurizers: dict, train_source, test_source, batch_size: int, batch_sharding) -> dict:
  """Runs every evaluator of `config.evals`; returns their merged {"<eval>/<features>/<setting>": value}."""
  train_features, train_labels = extract_features(featurizers, train_source, batch_size, batch_sharding)
  test_features, test_labels = extract_features(featurizers, test_source, batch_size, batch_sharding)
  features = {name: (train_features[name], test_features[name]) for name in featurizers}
  results = {}
  for name, eval_config in evals_config.items():
    evaluator = EVALUATORS[require_choice(eval_config.type, EVALUATORS, f"config.evals.{name}.type")]
    settings = {k: v for k, v in eval_config.items() if k != "type"}
    results.update(evaluator(features, train_labels, test_labels, train_source.num_classes, **settings))
  return results
