"""The papers' linear evaluation: a linear classifier trained on a frozen encoder with augmented inputs, through
the shared train step (method "supervised" with `frozen_encoder`: the encoder runs in inference mode under
stop_gradient, only the head is updated). Slower than `linear_probe` (which fits on cached centre-crop
features), but it is the protocol behind the papers' linear-evaluation numbers, so only its results sit next to
theirs. Results are keyed "linear_<protocol>/<encoder>/<budget>".

`paper_protocol(name, ...)` gives a paper's recipe as config entries:
- "simclr" (google-research/simclr, linear eval: `--train_mode=finetune --fine_tune_after_block=4
  --zero_init_logits_layer`): SGD with Nesterov momentum 0.9, lr 0.1 x B/256, cosine, no warmup, no weight
  decay, 90 epochs, head initialised at zero, random resized crop + flip.
- "mae" (facebookresearch/mae `main_linprobe.py`): BatchNorm without affine parameters (eps 1e-6) before the
  head, head truncated-normal std 0.01, LARS (trust coefficient 0.001) with lr 0.1 x B/256, no weight decay, 10
  warmup epochs of 90, cosine, random resized crop + flip. Under LARS a step changes the head by about
  lr x 0.001 / (1 - momentum) of its norm whatever the batch, so at a small batch and few steps the paper's
  lr barely moves it: configs for small data say how they scale it.
The papers' batch sizes (4096; 16384) are the config's `batch_size`.
"""

from ssljax import data
from ssljax.config import ConfigError, require_choice
from ssljax.evaluators import finetune
from ssljax.evaluators.label_budgets import budget_subset
from ssljax.train_step import build_trainer

PROTOCOLS = {
  "simclr": dict(
    epochs=90,
    warmup_epochs=0,
    optimizer=dict(name="sgd", base_lr=0.1, lr_scaling="linear", weight_decay=0.0, momentum=0.9, nesterov=True),
    head_norm=False,
    head_init_std=0.0,
  ),
  "mae": dict(
    epochs=90,
    warmup_epochs=10,
    optimizer=dict(name="lars", base_lr=0.1, lr_scaling="linear", weight_decay=0.0, momentum=0.9),
    head_norm=True,
    head_init_std=0.01,
  ),
}


def crop_and_flip(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob: float = 0.5) -> dict:
  """A `config.augment` section with random resized crops and flips only (the linear-evaluation inputs)."""
  return dict(
    crop_scale=crop_scale,
    crop_ratio=crop_ratio,
    flip_prob=flip_prob,
    jitter_prob=0.0,
    jitter_strength=0.0,
    grayscale_prob=0.0,
    blur_prob=0.0,
    blur_sigma=(0.1, 2.0),
    solarize_prob=0.0,
  )


def paper_protocol(protocol: str, batch_size: int, augment: dict | None = None, **overrides) -> dict:
  """`config.evals` entry for the paper protocol `protocol` ("simclr" | "mae"), `augment` defaulting to
  `crop_and_flip()`; `overrides` replace any of its settings (say so next to any number it produces)."""
  recipe = PROTOCOLS[require_choice(protocol, PROTOCOLS, "linear_eval protocol")]
  entry = dict(
    type="linear_eval",
    protocol=protocol,
    batch_size=batch_size,
    augment=augment or crop_and_flip(),
    label_budgets=("all",),
    baselines=("random_init",),
    seed=0,
    every_steps=0,
    max_steps=0,  # The papers' budgets are in epochs.
  )
  return {**entry, **recipe, **overrides}


def linear_eval_config(pretrain_config, num_examples: int, settings: dict):
  """The supervised run of a linear evaluation over `num_examples` labelled examples."""
  supervised = dict(
    label_smoothing=0.0,
    frozen_encoder=True,
    head_norm=settings["head_norm"],
    head_init_std=settings["head_init_std"],
  )
  return finetune.supervised_config(pretrain_config, num_examples, settings, supervised)


def run(context, protocol: str, label_budgets=("all",), baselines=("random_init",), seed: int = 0, **settings):
  """{"linear_<protocol>/<ssl | baseline>/<budget>": test accuracy}; `settings`: batch_size, epochs,
  warmup_epochs, optimizer, augment, head_norm, head_init_std (`paper_protocol` gives them)."""
  encoders = {}
  for name in ("ssl", *baselines):
    if name not in context.encoders:
      raise ConfigError(f"config.evals.<linear_eval>.baselines: {name!r} has no encoder to train a head on")
    encoders[name] = context.encoders[name]()
  _, train_labels, _ = context.features()
  results = {}
  for budget in label_budgets:
    subset, budget_name = budget_subset(train_labels, budget, seed)
    source = data.SubsetSource(context.train_source, subset)
    config = linear_eval_config(context.config, len(source), settings)
    trainer = build_trainer(config, context.mesh, len(source), source.num_classes)  # One compile for all encoders.
    predict = finetune.predictor(trainer)
    for name, variables in encoders.items():
      _, trained = finetune.train_classifier(config, context.mesh, variables, source, seed, trainer)
      accuracy = finetune.test_accuracy(trainer, trained, context.test_source, context.config.eval_batch_size, predict)
      results[f"linear_{protocol}/{name}/{budget_name}"] = accuracy
  return results
