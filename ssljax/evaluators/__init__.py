"""Evaluators, chosen per entry of `config.evals` by `type=`, run on the trained model after training.

Each evaluator is `run(context, **settings) -> {"<evaluator>/<features>/<setting>": value}` and reads what it
needs from the `EvalContext`: frozen features (linear probe), the encoder's variables (fine-tuning) or the whole
model (MAE reconstructions). Feature evaluators see the same feature sets: "ssl" (the trained encoder) and the
baselines named in `config.eval_baselines` (`ssljax/baselines.py`): "random_init" (the same encoder as a fair
random network) and "raw_pixels" (flattened images), so that each SSL number is read against what no pretraining gives.
"""

import dataclasses
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from ssljax import data
from ssljax.config import require_choice


def progress_bar(iterable, label: str, total: int, unit: str = "step"):
  """`iterable` behind a progress bar (its label, count, rate and ETA) on process 0's stderr, as training shows;
  the bar is cleared when done, so that what an evaluator costs is one line (`run_evaluators`)."""
  return tqdm(iterable, label, total=total, unit=unit, leave=False, disable=jax.process_index() > 0, dynamic_ncols=True)


def extract_features(featurizers: dict, source, batch_size: int, batch_sharding, progress: str = "features"):
  """Runs each featurizer (jitted images or tokens -> [B, D]) over all of `source` in order, behind a progress bar
  labelled `progress`.

  Returns ({name: [len(source), D] float32 on the host}, labels [len(source)] int32).
  """
  chunks = {name: [] for name in featurizers}
  labels = []
  batches = data.eval_batches(source, batch_size, batch_sharding)
  batches = progress_bar(batches, progress, -(-len(source) // batch_size), unit="batch")
  for batch, valid in batches:
    for name, featurize in featurizers.items():
      features = multihost_utils.process_allgather(featurize(data.model_input(batch)), tiled=True)
      chunks[name].append(np.asarray(features[:valid], np.float32))
    labels.append(np.asarray(multihost_utils.process_allgather(batch["label"], tiled=True))[:valid])
  return {name: np.concatenate(c) for name, c in chunks.items()}, np.concatenate(labels)


@dataclasses.dataclass
class EvalContext:
  """A trained model and what evaluators need around it.

  Attributes:
    config: the run's config (fine-tuning derives its own from it).
    model: the trained Flax module (the method's model, possibly wrapped with the online probe).
    method: its `Method` (`make_inputs`: the perplexity evaluator masks as training does).
    variables: {"params": ..., **model_state} of the trained model.
    featurizers: name -> jitted images [B, H, W, C] -> features [B, D] ("ssl" and the baselines).
    encoders: name -> () -> the encoder's variables ("ssl": trained; "random_init": the fair random network),
      for evaluators that run the encoder themselves (linear evaluation on augmented inputs).
    writer: a `MetricWriter` for images, or None.
  """

  config: Any
  workdir: str
  mesh: Any
  batch_sharding: Any
  model: nn.Module
  variables: dict
  featurizers: dict
  train_source: Any
  test_source: Any
  encoders: dict = dataclasses.field(default_factory=dict)
  writer: Any = None
  method: Any = None
  _features: tuple | None = dataclasses.field(default=None, init=False, repr=False)

  def features(self):
    """({name: (train [N, D], test [M, D])}, train labels [N], test labels [M]), all on the host; extracted once
    and shared by every evaluator."""
    if self._features is None:
      batch_size = self.config.eval_batch_size
      sharding, names = self.batch_sharding, ", ".join(self.featurizers)
      train, train_labels = extract_features(
        self.featurizers, self.train_source, batch_size, sharding, f"features ({names}) of the training split"
      )
      test, test_labels = extract_features(
        self.featurizers, self.test_source, batch_size, sharding, f"features ({names}) of the test split"
      )
      self._features = ({name: (train[name], test[name]) for name in self.featurizers}, train_labels, test_labels)
    return self._features


def registry() -> dict:
  """{type: evaluator function}."""
  from ssljax.evaluators import (
    autoencoder_pictures,
    colorization,
    cyclegan_translations,
    embedding_plot,
    fewshot,
    finetune,
    gan_samples,
    inpainting,
    knn,
    likelihood,
    linear_eval,
    linear_probe,
    lora_finetune,
    perplexity,
    pixelcnn_samples,
    reconstruction,
    samples,
    self_training,
    word_vectors,
    zero_shot,
  )

  return {
    "linear_probe": linear_probe.run,
    "linear_eval": linear_eval.run,
    "knn": knn.run,
    "fewshot": fewshot.run,
    "finetune": finetune.run,
    "lora_finetune": lora_finetune.run,
    "self_training": self_training.run,
    "embedding_plot": embedding_plot.run,
    "reconstruction": reconstruction.run,
    "autoencoder_pictures": autoencoder_pictures.run,
    "inpainting": inpainting.run,
    "colorization": colorization.run,
    "likelihood": likelihood.run,
    "pixelcnn_samples": pixelcnn_samples.run,
    "gan_samples": gan_samples.run,
    "cyclegan_translations": cyclegan_translations.run,
    "zero_shot": zero_shot.run,
    "perplexity": perplexity.run,
    "word_vectors": word_vectors.run,
    "samples": samples.run,
  }


def own_baselines(context, baselines) -> tuple:
  """The baselines an evaluator trains itself (fine-tuning's, linear evaluation's `baselines`) that
  `config.eval_baselines` also names: that key switches every baseline of the run on or off at once."""
  return tuple(name for name in baselines if name in context.config.get("eval_baselines", ()))


# Evaluators that run on unlabelled data; the others need the labels.
LABEL_FREE = ("reconstruction", "zero_shot", "perplexity", "word_vectors", "samples")


def _due_at(eval_config, step: int) -> bool:
  every = eval_config.get("every_steps")
  return bool(every) and step % every == 0


def due(evals_config, step: int) -> bool:
  """Whether any evaluator of `config.evals` runs during training at `step` (its `every_steps` divides it)."""
  return any(_due_at(eval_config, step) for eval_config in evals_config.values())


def run_evaluators(evals_config, context: EvalContext, step: int | None = None, failures: list | None = None) -> dict:
  """Runs the evaluators of `config.evals`: all of them after training (`step` None), or those due at a
  training `step`. Returns their merged results. With a `failures` list, an evaluator that raises is reported
  there (one line naming it and the error) and the others still run: one evaluator's failure (t-SNE on a
  one-image test split) does not lose the others' results."""
  evaluators = registry()
  results = {}
  announce = step is None and jax.process_index() == 0  # After training: say what runs and what it cost.
  for number, (name, eval_config) in enumerate(evals_config.items(), 1):
    evaluator = evaluators[require_choice(eval_config.type, evaluators, f"config.evals.{name}.type")]
    if step is not None and not _due_at(eval_config, step):
      continue
    if not context.train_source.num_classes and eval_config.type not in LABEL_FREE:
      if step is None:
        logging.warning("config.evals.%s (%s) skipped: the training data has no labels", name, eval_config.type)
      continue
    settings = {k: v for k, v in eval_config.items() if k not in ("type", "every_steps")}
    if announce:
      print(f"evaluator {number} of {len(evals_config)}: {name} ({eval_config.type})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
      results.update(evaluator(context, **settings))
    except Exception as error:  # noqa: BLE001 - reported by the caller, after the other evaluators' results are kept.
      if failures is None:
        raise
      failures.append(f"config.evals.{name} ({eval_config.type}) failed: {type(error).__name__}: {_one_line(error)}")
      logging.error("%s", failures[-1])
    if announce:
      print(f"evaluator {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
  return results


def _one_line(error: Exception) -> str:
  return " ".join(str(error).split())[:300]
