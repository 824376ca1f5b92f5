"""LoRA fine-tuning (Hu et al. 2021; our lecture 001): the pretrained ViT stays frozen, every linear layer of its
blocks gets a low-rank update (alpha / rank) x A B (A [in, rank], B [rank, out], B = 0 at the start), and only
the adapters and a linear head are trained, through the shared train step (method "supervised" with the frozen
map `lora_frozen`: the other parameters' updates are zeroed). Same data, augmentation and schedule as `finetune`;
the result is read against full fine-tuning and the linear probe, with the number of trained parameters.
"""

import jax
import numpy as np

from ssljax import data
from ssljax.config import ConfigError
from ssljax.evaluators import finetune
from ssljax.evaluators.label_budgets import budget_subset
from ssljax.methods.supervised import lora_frozen
from ssljax.train_step import build_trainer, encoder_variables


def parameter_counts(config, mesh, num_examples: int, num_classes: int) -> tuple[int, int]:
  """(trained, all) parameters of the LoRA model `config` builds (shapes only, nothing is compiled)."""
  trainer = build_trainer(config, mesh, num_examples, num_classes)
  params = jax.eval_shape(trainer.make_state, 0).params
  leaves = zip(jax.tree.leaves(params), jax.tree.leaves(lora_frozen(params)), strict=True)
  sizes = [(int(np.prod(p.shape)), bool(frozen)) for p, frozen in leaves]
  return sum(size for size, frozen in sizes if not frozen), sum(size for size, _ in sizes)


def run(context, rank: int, alpha: float, label_budgets=("all",), seed: int = 0, **settings) -> dict:
  """{"lora_finetune/ssl/<budget>": test accuracy, "lora_finetune/ssl/trained_params": count,
  "lora_finetune/ssl/trained_fraction": count / all parameters}; `settings` as `finetune`'s."""
  if context.config.model.name != "vit":
    raise ConfigError("config.evals: lora_finetune adapts a ViT's linear layers; config.model.name is not 'vit'")
  _, train_labels, _ = context.features()
  init = encoder_variables(context.variables)
  results = {}
  for budget in label_budgets:
    subset, budget_name = budget_subset(train_labels, budget, seed)
    source = data.SubsetSource(context.train_source, subset)
    config = finetune.finetune_config(context.config, len(source), settings)
    config.model.lora = dict(rank=rank, alpha=alpha)
    key = f"lora_finetune/ssl/{budget_name}"
    results[key] = finetune.finetune_accuracy(
      config, context.mesh, init, source, context.test_source, context.config.eval_batch_size, seed, key
    )
  trained, total = parameter_counts(config, context.mesh, len(source), source.num_classes)  # Same for every budget.
  results["lora_finetune/ssl/trained_params"] = trained
  results["lora_finetune/ssl/trained_fraction"] = trained / total
  return results
