r"""Rotation prediction (Gidaris et al. 2018) on scikit-learn's digits: the embedded default's data, encoder,
budget (100 epochs, batch 256) and evaluators (configs/simclr_digits.py); every image in all four rotations.

  python -m ssljax.train --config configs/rotation_digits.py --workdir /tmp/ssljax/rotation_digits
  python -m ssljax.train --config configs/rotation_digits.py:runlocal --workdir /tmp/ssljax/rotation_digits_smoke

The pretext tasks' recipe (`pretext_recipe`, shared with jigsaw_digits and context_prediction_digits): RotNet's
SGD (Nesterov momentum 0.9, lr 0.1 x B/256, weight decay 5e-4) on a cosine schedule, light augmentation (random
resized crops of 50-100% of the image, no colour distortion: the task is the signal, not invariance), a linear
4-way head on the pooled features (the ResNet heads of Kolesnikov et al. 2019).
Results: benchmarks/RESULTS.md, "Pretext tasks on digits".
"""

from configs import simclr_digits


def pretext_recipe(config, method: str, settings: dict):
  """simclr_digits' data, encoder, budget and evaluators with a pretext task's optimizer and augmentation."""
  del config["simclr"]
  config.method = method
  config[method] = settings
  config.augment.update(crop_scale=(0.5, 1.0), jitter_prob=0.0, blur_prob=0.0)
  config.optimizer = dict(
    name="sgd", base_lr=0.1, lr_scaling="linear", weight_decay=5e-4, warmup_steps=0, momentum=0.9, nesterov=True
  )
  return config


def get_config(arg: str = ""):
  return pretext_recipe(simclr_digits.get_config(arg), "rotation", dict(hidden_dim=0))
