"""End-to-end fine-tuning of the pretrained encoder with a linear head, on all labels or a class-balanced subset
(SimCLR's 1%/10% semi-supervised protocol), through the shared train step (method "supervised").

For a ViT this is MAE's recipe: global average pooling with a fresh LayerNorm ("mean" pool), stochastic depth,
AdamW with layer-wise learning-rate decay, label smoothing, class token without weight decay. The same fine-tune
from a randomly initialised encoder is the baseline. Mixup/CutMix/RandAugment of the ImageNet recipe are not
implemented. The from-scratch baseline trains without layer-wise lr decay (or with `scratch_optimizer`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from ssljax import data
from ssljax.config import ConfigError
from ssljax.evaluators import own_baselines, progress_bar
from ssljax.evaluators.label_budgets import budget_subset
from ssljax.train_step import build_trainer, encoder_variables, run_steps, total_steps


def supervised_config(pretrain_config, num_examples: int, settings: dict, supervised: dict):
  """The pretraining config turned into a supervised run (method "supervised" with the section `supervised`)
  over `num_examples` labelled examples, with the batch size, epochs, warmup, optimizer and augmentation of
  `settings`."""
  config = ConfigDict(pretrain_config.to_dict())
  config.method = "supervised"
  config.online_probe = False
  config.supervised = supervised
  # The evaluator's `augment` overrides the run's final config.augment (command-line overrides included).
  config.augment = {**config.augment.to_dict(), **dict(settings.get("augment") or {})}
  devices = jax.device_count()
  config.batch_size = min(settings["batch_size"], num_examples // devices * devices)
  if config.batch_size == 0:
    raise ConfigError(f"config.evals.finetune: {num_examples} labelled examples are fewer than the {devices} devices")
  config.epochs = settings["epochs"]
  # `max_steps` caps the budget, so that evaluation does not grow with the dataset (0: epochs alone decide).
  config.total_steps = 0
  if settings.get("max_steps"):
    config.total_steps = min(total_steps(config, num_examples), settings["max_steps"])
  config.optimizer = dict(settings["optimizer"])
  steps_per_epoch = num_examples / config.batch_size
  warmup = int(round(settings.get("warmup_epochs", 0) * steps_per_epoch))
  config.optimizer.warmup_steps = min(warmup, config.total_steps) if config.total_steps else warmup
  return config


def finetune_config(pretrain_config, num_examples: int, settings: dict):
  """The fine-tuning run over `num_examples` labelled examples; a ViT gets MAE's fine-tuning architecture."""
  supervised = dict(label_smoothing=settings.get("label_smoothing", 0.1))
  config = supervised_config(pretrain_config, num_examples, settings, supervised)
  if config.model.name == "vit":
    config.model.pool = "mean"
    config.model.drop_path = settings.get("drop_path", 0.1)
    config.model.learned_pos_embed = True  # MAE's fine-tuning trains the (sin-cos initialised) position embedding.
  return config


def _merge(fresh: dict, pretrained: dict) -> dict:
  """`fresh` with every entry that `pretrained` also has replaced by a copy of the pretrained one (so that the
  train step's buffer donation never frees the trained model's arrays)."""
  if not isinstance(fresh, dict):
    if fresh.shape != pretrained.shape:
      raise ConfigError(f"fine-tuning: pretrained shape {pretrained.shape} does not fit {fresh.shape}")
    return jnp.array(pretrained, copy=True)
  return {k: _merge(v, pretrained[k]) if k in pretrained else v for k, v in fresh.items()}


def train_classifier(config, mesh, init_encoder, train_source, seed: int, trainer=None, label: str = "classifier"):
  """Trains the supervised run `config` on `train_source` from `init_encoder` variables (None: from scratch),
  with `trainer` when given (built for this config and source: one compiled step serves several encoders), behind
  a progress bar named `label`. Returns (trainer, the trained model's variables)."""
  trainer = trainer or build_trainer(config, mesh, len(train_source), train_source.num_classes)
  state = trainer.make_state(seed)
  if init_encoder is not None:
    fresh = {"params": state.params, **state.model_state}
    merged = {
      name: {**tree, "encoder": _merge(tree["encoder"], init_encoder[name])} if "encoder" in tree else tree
      for name, tree in fresh.items()
    }
    params = merged.pop("params")
    state = jax.device_put(state.replace(params=params, model_state=merged), trainer.state_sharding)
  sampler = data.StepIndexedSampler(len(train_source), config.batch_size, seed)
  views = data.views_source(train_source, config, trainer.method.crops, seed)  # Host crops of the full images.
  workers = config.dataset.get("worker_processes", 0)
  batches = data.train_batches(views, sampler, trainer.batch_sharding, 0, trainer.num_steps, worker_processes=workers)
  for _, new_state, _ in progress_bar(run_steps(trainer.step, state, batches), label, trainer.num_steps):
    state = new_state
  return trainer, {"params": state.params, **state.model_state}


def predictor(trainer):
  """Jitted (variables, images) -> the classes `trainer`'s classifier predicts (inference mode); the variables are
  arguments, so one compilation serves every classifier trained with `trainer`."""
  return jax.jit(
    lambda variables, images: jnp.argmax(trainer.model.apply(variables, images, train=False)["logits"], -1)
  )


def test_accuracy(trainer, variables, test_source, eval_batch_size: int, predict=None) -> float:
  """The trained classifier's accuracy on `test_source` (inference mode, unaugmented images); `predict` from
  `predictor(trainer)` when several classifiers share the trainer."""
  predict = predict or predictor(trainer)
  correct = 0
  for batch, valid in data.eval_batches(test_source, eval_batch_size, trainer.batch_sharding):
    correct += int(np.sum(np.asarray(predict(variables, batch["image"]) == batch["label"])[:valid]))
  return correct / len(test_source)


def finetune_accuracy(config, mesh, init_encoder, train_source, test_source, eval_batch_size: int, seed: int, label):
  """Test accuracy after training `config` from `init_encoder` variables (None: from scratch); `label` names its
  progress bar."""
  trainer, variables = train_classifier(config, mesh, init_encoder, train_source, seed, label=label)
  return test_accuracy(trainer, variables, test_source, eval_batch_size)


def scratch_settings(settings: dict, scratch_optimizer: dict | None = None) -> dict:
  """The from-scratch baseline's settings: `scratch_optimizer` if given, else the fine-tune optimizer without
  layer-wise lr decay (which exists to keep pretrained lower layers close to their values; on a random network
  it would only keep the lower layers near random)."""
  optimizer = dict(scratch_optimizer) if scratch_optimizer else {**settings["optimizer"], "layer_decay": 1.0}
  return {**settings, "optimizer": optimizer}


def run(
  context,
  label_budgets=("all",),
  baselines=("random_init",),
  seed: int = 0,
  scratch_optimizer: dict | None = None,
  **settings,
) -> dict:
  """{"finetune/<ssl | random_init>/<budget>": test accuracy}; `settings`: batch_size, epochs, warmup_epochs,
  optimizer (as `config.optimizer`, may set layer_decay and no_decay), augment, drop_path, label_smoothing;
  the random_init baseline (when `config.eval_baselines` names it too) trains with `scratch_settings`."""
  _, train_labels, _ = context.features()
  initial = {"ssl": (encoder_variables(context.variables), settings)}
  for name in baselines:
    if name != "random_init":
      raise ConfigError(f"config.evals.finetune.baselines: only 'random_init' can be fine-tuned, not {name!r}")
  for name in own_baselines(context, baselines):
    initial[name] = (None, scratch_settings(settings, scratch_optimizer))
  results = {}
  for budget in label_budgets:
    subset, budget_name = budget_subset(train_labels, budget, seed)
    source = data.SubsetSource(context.train_source, subset)
    for name, (init, recipe) in initial.items():
      config = finetune_config(context.config, len(source), recipe)
      key = f"finetune/{name}/{budget_name}"
      results[key] = finetune_accuracy(
        config, context.mesh, init, source, context.test_source, context.config.eval_batch_size, seed, key
      )
  return results
