r"""SimCLR on scikit-learn's digits: the embedded default, real data with no download, minutes on a 2-core CPU.

  python -m ssljax.train --config configs/simclr_digits.py --workdir /tmp/ssljax/simclr_digits
  python -m ssljax.train --config configs/simclr_digits.py:runlocal --workdir /tmp/ssljax/simclr_digits_smoke
  python -m ssljax.train --config configs/simclr_digits.py:runlocal,train_only --workdir /tmp/ssljax/pretrain_only
  python -m ssljax.train --config configs/simclr_digits.py:self_training --workdir /tmp/ssljax/self_training

Expected (2-core CPU, 12 to 15 minutes, 8 to 9.5 of them training): the SSL features beat raw pixels and a random
encoder (a fair random network: `ssljax/baselines.py`) with few labels. Measured (test accuracy, README, each
number with its protocol; SSL / raw pixels / random init, 2026-12-04): fast linear probe (`linear_fast`) 10 per
class 0.939 / 0.853 / 0.528, all labels 0.989 / 0.972 / 0.783; SimCLR's linear evaluation (`linear_simclr`, all
labels) 0.972 / - / 0.642; few-shot ridge 1 shot 0.731 / 0.678 / 0.318, 10 shots 0.966 / 0.900 / 0.567; kNN k=20
0.981 / 0.986 / 0.800; fine-tuning on 1% / 10% of the labels 0.561 / 0.950 (random init 0.131 / 0.533); t-SNE
silhouette 0.46 / 0.44. `:self_training` adds self-training with data distillation (lecture 002); see
benchmarks/RESULTS.md.
"""

import ml_collections
from ml_collections import config_dict

from ssljax.evaluators import linear_eval


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.method = "simclr"
  config.seed = 0
  config.dtype = "float32"

  config.dataset = dict(
    name="digits",
    train_split="train",
    test_split="test",
    image_size=16,
    channels=1,
    data_dir=config_dict.placeholder(str),
    skip_bad_files=False,
    center_crop=1.0,
    host_crops=False,
    host_resize="bilinear",  # With host_crops: tf.image.resize's (no antialiasing), as SimCLR's tf.data pipeline.
    worker_processes=0,  # Training batches read in this process's threads; > 0: also in that many processes.
  )
  config.model = dict(name="resnet", depth=18, width=0.25, small_stem=True)
  config.simclr = dict(
    temperature=0.2, proj_dim=64, proj_layers=2, proj_hidden_dim=None, block_size=config_dict.placeholder(int)
  )
  # Digits are not mirror-symmetric and have no colour: crops, small brightness/contrast changes and blur.
  config.augment = dict(
    crop_scale=(0.3, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip_prob=0.0,
    jitter_prob=0.8,
    jitter_strength=0.5,
    grayscale_prob=0.0,
    blur_prob=0.5,
    blur_sigma=(0.1, 1.0),
    solarize_prob=0.0,
    jitter_brightness="multiply",  # torchvision's jitter; byol_imagenet runs DeepMind's ("add", "hsv", "zero").
    jitter_saturation="blend",
    blur_padding="reflect",
  )

  config.batch_size = 256
  config.epochs = 100
  config.total_steps = 0  # 0: derived from epochs.
  config.optimizer = dict(
    name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6, warmup_steps=50, warmup_epochs=0, momentum=0.9
  )

  config.log_every = 10
  config.checkpoint_every = 200
  config.keep_checkpoints = 2

  config.eval_batch_size = 360
  config.train_eval_examples = 10_000  # During training, evaluators see at most 10k images of each split.
  config.eval_baselines = ("raw_pixels", "random_init")
  config.evals = dict(
    # Every setting is spelled out (every_steps 0: after training only), so that any can be overridden.
    linear=dict(type="linear_probe", label_budgets=("all", 10), steps=500, seed=0, every_steps=0),
    knn=dict(type="knn", ks=(20, 200), temperature=0.07, every_steps=200),  # Also tracked during training.
    fewshot=dict(type="fewshot", shots=(1, 5, 10, 25), l2_reg=0.1, seeds=(0, 1, 2, 3, 4), every_steps=0),
    # SimCLR's semi-supervised protocol (Table 7): fine-tune the whole encoder on 1% / 10% of the labels.
    finetune=dict(
      type="finetune",
      label_budgets=("1pct", "10pct"),
      baselines=("random_init",),  # The same fine-tune from a random initialisation.
      seed=0,
      every_steps=0,
      batch_size=128,
      epochs=60,
      max_steps=1000,  # A cap for larger datasets (1% / 10% of digits take 60 / 68 steps).
      warmup_epochs=0,
      # SimCLR's fine-tuning: Nesterov momentum, lr 0.05 x B/256, no warmup, no weight decay. (Not LARS: its trust
      # ratio would scale the updates of the near-zero initial head to nothing.)
      optimizer=dict(name="sgd", base_lr=0.05, lr_scaling="linear", weight_decay=0.0, momentum=0.9, nesterov=True),
      augment=dict(jitter_prob=0.0, blur_prob=0.0),  # Overrides of config.augment: crops only.
      drop_path=0.1,  # ViT encoders only.
      label_smoothing=0.0,
    ),
    # SimCLR's linear evaluation (google-research/simclr): a head on the frozen encoder, 90 epochs of Nesterov SGD
    # on random crops; crops as in pretraining and no flips, as digits are not mirror-symmetric.
    linear_simclr=linear_eval.paper_protocol(
      "simclr", batch_size=256, augment=linear_eval.crop_and_flip(crop_scale=(0.3, 1.0), flip_prob=0.0)
    ),
    embedding=dict(
      type="embedding_plot", methods=("tsne",), features=("ssl", "raw_pixels"), max_points=2000, seed=0, every_steps=0
    ),
  )

  if "runlocal" in arg.split(","):  # A smoke run of the whole pipeline (~1.5 min on 2 cores; what the tests launch).
    config.dataset.image_size = 8
    config.model.width = 0.125
    config.batch_size = 64
    config.total_steps = 12
    config.log_every = 2
    config.checkpoint_every = 4
    config.evals.linear.steps = 100
    config.evals.knn.update(ks=(20,), every_steps=4)
    config.evals.fewshot.shots = (1, 10)
    config.evals.finetune.epochs = 1
    config.evals.linear_simclr.update(epochs=1, baselines=())
    config.evals.embedding.max_points = 100
  if "self_training" in arg.split(","):  # Adds self-training with data distillation (lecture 002) beside fine-tuning.
    config.evals.self_training = dict(
      {k: v for k, v in config.evals.finetune.to_dict().items() if k not in ("type", "baselines")},
      type="self_training",
      flip=False,
      # The most confident half of each predicted class: a 1% teacher is too unsure for a fixed threshold (its
      # median confidence is 0.25), a 10% one keeps 75% at 0.9.
      threshold=0.0,
      top_fraction=0.5,
      crops=(1.0, 0.875, 0.75),  # Data distillation's ensemble: centre crops of 100/87.5/75% of the side (no flips).
      student_epochs=10,  # Over labelled + pseudo-labelled images (~1,400), about as many steps as the 10% fine-tune.
    )
    if "runlocal" in arg.split(","):
      config.evals.self_training.update(epochs=1, student_epochs=1)
  if "train_only" in arg.split(","):  # Pretraining without evaluation.
    config.evals = {}
    config.eval_baselines = ()
  return config
