"""The papers' linear evaluation: a linear classifier trained on a frozen encoder with augmented inputs, through
the shared train step (method "supervised" with `frozen_encoder`: the encoder runs in inference mode under
stop_gradient, only the head is updated). Slower than `linear_probe` (which fits on cached centre-crop
features), but it is the protocol behind the papers' linear-evaluation numbers, so only its results sit next to
theirs. Results are keyed "linear_<protocol>/<encoder>/<budget>".

`paper_protocol(name, ...)` gives a paper's recipe as config entries (every one: encoder frozen in inference mode,
no weight decay and no BatchNorm before the head unless said, random resized crop (0.08 - 1) + flip):
- "simclr" (google-research/simclr, `--train_mode=finetune --fine_tune_after_block=4 --zero_init_logits_layer`):
  SGD with Nesterov momentum 0.9, lr 0.1 x B/256, cosine, 90 epochs, head initialised at zero.
- "mae" (facebookresearch/mae `main_linprobe.py`): BatchNorm without affine parameters (eps 1e-6) before the
  head, head N(0, 0.01^2), LARS (trust coefficient 0.001, lr applied after momentum) with lr 0.1 x B/256, 10
  warmup epochs of 90, cosine. Under LARS a step changes the head by about lr x 0.001 / (1 - momentum) of its
  norm whatever the batch, so at a small batch and few steps the paper's lr barely moves it: configs for small
  data say how they scale it.
- "moco_v2" (facebookresearch/moco `main_lincls.py`): SGD momentum 0.9, lr 30 (not scaled with the batch, 256),
  x 0.1 at epochs 60 and 80 of 100, head N(0, 0.01^2).
- "moco_v3" / "moco_v3_vit" (facebookresearch/moco-v3 `main_lincls.py`, CONFIG.md): SGD momentum 0.9, lr 0.1 x
  B/256 (ViT: 3 x B/256), cosine, 90 epochs, batch 1024, head N(0, 0.01^2).
- "simsiam" (facebookresearch/simsiam `main_lincls.py --lars`): LARS as apex's LARC (every parameter adapted,
  the bias too; lr after momentum), momentum 0.9, lr 0.1 x B/256, cosine, 90 epochs, batch 4096, head
  N(0, 0.01^2).
- "byol" (deepmind-research `byol/configs/eval.py`): SGD with Nesterov momentum 0.9, lr 0.2 x B/256, cosine per
  step, 80 epochs, batch 4096 (the code's default), head truncated N(0, 1/fan_in) at +-2 std (Haiku's Linear).
- "dino" (facebookresearch/dino `eval_linear.py`): SGD momentum 0.9, lr 0.001 x B/256, cosine, 100 epochs, batch
  1024, head N(0, 0.01^2); a ViT-S/16's features are the class tokens of its last 4 blocks (`model=dict(
  cls_blocks=4)`; ViT-B/16: `model=dict(patch_mean=True)`), a ResNet's its pooled features. DINO's k-NN (k = 20,
  T = 0.07, on the teacher's l2-normalised features) is the `knn` evaluator.
- "barlow_twins" (facebookresearch/barlowtwins `evaluate.py`), "vicreg" (facebookresearch/vicreg `evaluate.py`,
  the same recipe) and "swav" / "deepcluster_v2" (facebookresearch/swav `eval_linear.py`, the same recipe): SGD
  momentum 0.9 without Nesterov, lr 0.3 at batch 256 (x B/256 here), weight decay 1e-6 on the head, cosine, 100
  epochs, head N(0, 0.01^2) with zero bias, no BatchNorm before it.
Schedules here are per step where the references step them per epoch (the cosine's value differs by less than
one epoch's change). The papers' batch sizes are the config's `batch_size`.
"""

from ssljax import data
from ssljax.config import ConfigError, require_choice
from ssljax.evaluators import finetune, own_baselines
from ssljax.evaluators.label_budgets import budget_subset
from ssljax.train_step import build_trainer

_NO_DECAY = dict(weight_decay=0.0, momentum=0.9)
_SGD = dict(name="sgd", lr_scaling="linear", nesterov=False, **_NO_DECAY)
_BARLOW_TWINS = dict(
  epochs=100,
  warmup_epochs=0,
  optimizer=dict(_SGD, base_lr=0.3, weight_decay=1e-6),
  head_norm=False,
  head_init_std=0.01,
)
PROTOCOLS = {
  "simclr": dict(
    epochs=90,
    warmup_epochs=0,
    optimizer=dict(_SGD, base_lr=0.1, nesterov=True),
    head_norm=False,
    head_init_std=0.0,
  ),
  "mae": dict(
    epochs=90,
    warmup_epochs=10,
    optimizer=dict(name="lars", base_lr=0.1, lr_scaling="linear", lr_after_momentum=True, **_NO_DECAY),
    head_norm=True,
    head_init_std=0.01,
  ),
  "moco_v2": dict(
    epochs=100,
    warmup_epochs=0,
    optimizer=dict(_SGD, base_lr=30.0, lr_scaling="none", schedule="steps", decay_epochs=(60, 80)),
    head_norm=False,
    head_init_std=0.01,
  ),
  "moco_v3": dict(epochs=90, warmup_epochs=0, optimizer=dict(_SGD, base_lr=0.1), head_norm=False, head_init_std=0.01),
  "moco_v3_vit": dict(
    epochs=90, warmup_epochs=0, optimizer=dict(_SGD, base_lr=3.0), head_norm=False, head_init_std=0.01
  ),
  "simsiam": dict(
    epochs=90,
    warmup_epochs=0,
    optimizer=dict(
      name="lars", base_lr=0.1, lr_scaling="linear", lr_after_momentum=True, decay_norm_and_bias=True, **_NO_DECAY
    ),
    head_norm=False,
    head_init_std=0.01,
  ),
  "byol": dict(
    epochs=80,
    warmup_epochs=0,
    optimizer=dict(_SGD, base_lr=0.2, nesterov=True),
    head_norm=False,
    head_init_std="fan_in",
  ),
  "dino": dict(epochs=100, warmup_epochs=0, optimizer=dict(_SGD, base_lr=0.001), head_norm=False, head_init_std=0.01),
  "barlow_twins": _BARLOW_TWINS,
  "vicreg": _BARLOW_TWINS,
  "swav": _BARLOW_TWINS,
  "deepcluster_v2": _BARLOW_TWINS,  # The swav repository's eval_linear.py.
}
# The batch size each paper's protocol used (the config's `batch_size` is what runs).
PAPER_BATCH_SIZES = {
  "simclr": 4096,
  "mae": 16384,
  "moco_v2": 256,
  "moco_v3": 1024,
  "moco_v3_vit": 1024,
  "simsiam": 4096,
  "byol": 4096,
  "dino": 1024,
  "barlow_twins": 256,
  "vicreg": 256,
  "swav": 256,
  "deepcluster_v2": 256,
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


def paper_protocol(protocol: str, batch_size: int | None = None, augment: dict | None = None, **overrides) -> dict:
  """`config.evals` entry for the paper protocol `protocol` (a key of PROTOCOLS) at `batch_size` (default: the
  paper's), `augment` defaulting to `crop_and_flip()`; `overrides` replace any of its settings (say so next to
  any number it produces), e.g. `model=dict(cls_blocks=4)` (the encoder's features: DINO's ViT-S/16)."""
  recipe = PROTOCOLS[require_choice(protocol, PROTOCOLS, "linear_eval protocol")]
  entry = dict(
    type="linear_eval",
    protocol=protocol,
    batch_size=batch_size or PAPER_BATCH_SIZES[protocol],
    augment=augment or crop_and_flip(),
    label_budgets=("all",),
    baselines=("random_init",),
    seed=0,
    every_steps=0,
    max_steps=0,  # The papers' budgets are in epochs.
    model=dict(cls_blocks=1, patch_mean=False),  # A ViT's features: its last class token (DINO: `cls_blocks=4`).
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
  config = finetune.supervised_config(pretrain_config, num_examples, settings, supervised)
  if config.model.name == "vit":  # Which of its tokens a ViT's features are; a ResNet's are always pooled.
    config.model.update(settings.get("model") or {})
  return config


def run(context, protocol: str, label_budgets=("all",), baselines=("random_init",), seed: int = 0, **settings):
  """{"linear_<protocol>/<ssl | baseline>/<budget>": test accuracy}; `settings`: batch_size, epochs,
  warmup_epochs, optimizer, augment, head_norm, head_init_std, model (`paper_protocol` gives them)."""
  for name in baselines:
    if name not in context.encoders:
      raise ConfigError(f"config.evals.<linear_eval>.baselines: {name!r} has no encoder to train a head on")
  encoders = {name: context.encoders[name]() for name in ("ssl", *own_baselines(context, baselines))}
  _, train_labels, _ = context.features()
  results = {}
  for budget in label_budgets:
    subset, budget_name = budget_subset(train_labels, budget, seed)
    source = data.SubsetSource(context.train_source, subset)
    config = linear_eval_config(context.config, len(source), settings)
    trainer = build_trainer(config, context.mesh, len(source), source.num_classes)  # One compile for all encoders.
    predict = finetune.predictor(trainer)
    for name, variables in encoders.items():
      key = f"linear_{protocol}/{name}/{budget_name}"
      _, trained = finetune.train_classifier(config, context.mesh, variables, source, seed, trainer, key)
      results[key] = finetune.test_accuracy(
        trainer, trained, context.test_source, context.config.eval_batch_size, predict
      )
  return results
