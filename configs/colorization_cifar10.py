r"""Colorization (Zhang, Isola & Efros 2016) on CIFAR-10: the L channel in, a distribution over the ab bins out
(ssljax/methods/colorization.py), with a small-stem ResNet-18 trunk and the common evaluators.

  python -m ssljax.train --config configs/colorization_cifar10.py --workdir /tmp/ssljax/colorization_cifar10
  python -m ssljax.train --config configs/colorization_cifar10.py:sample_photos --workdir /tmp/ssljax/colorize_photos
  python -m ssljax.train --config configs/colorization_cifar10.py:runlocal --workdir /tmp/ssljax/colorization_smoke

Needs the tfds `cifar10` ArrayRecord files (prepare once: `pip install -e .[prepare]` and
`python -m ssljax.prepare cifar10`); any colour dataset works through `--config.dataset.name` (a tfds name, or
`npz` / `folder` with `--config.dataset.data_dir`). The embedded default (scikit-learn's digits) has no colour, so
colorization has no digits config: there is nothing to predict from grayscale digits. `:sample_photos` runs
offline on crops of scikit-learn's two bundled colour photos (held-out right edges; ResNet-18 x0.5, 30 epochs):
measured AuC 0.931 against 0.915 for grayscale in 11 min on 2 cores (benchmarks/RESULTS.md); its two classes
(which photo) make the feature evaluators uninformative there.

The paper's recipe where it carries over: ab bins of side 10, soft-encoding over the nearest bins with sigma 5,
rebalancing with lambda 0.5 from the training set's colour distribution smoothed with sigma 5, annealed mean at T =
0.38, Adam (b1 0.9, b2 0.99) with weight decay 1e-3 (decoupled, AdamW's; the reference's Caffe solver adds it to the
gradient), horizontal flips and crops without colour augmentation. The learning rate (1e-3 x B/256, cosine) and
budget (100 epochs, batch 256) are ours: the paper's 3e-5 for 450k steps of batch 40 is for its VGG-style network
without residual connections on ImageNet.

Evaluation: `colorization` gives the paper's raw accuracy (AuC of the per-pixel ab error for thresholds 0 to 150;
the paper: 89.5% on ImageNet against 89.1% for grayscale, its Table 1) and `colorization.png`; the feature
evaluators read the trunk on L alone (as the paper's linear classification on frozen features; our
`linear_fast` is our fast probe, not its protocol). Fine-tuning is not among them: the supervised step feeds RGB,
the trunk was trained on L. Not yet measured on CIFAR-10 here (no network on this machine).
"""

from configs import simclr_cifar10, simclr_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  config = simclr_digits.get_config(",".join(a for a in args if a != "runlocal"))
  del config["simclr"]
  config.method = "colorization"
  config.dataset = simclr_cifar10.get_config().dataset  # tfds cifar10, 32 px RGB.
  config.model = dict(name="resnet", depth=18, width=1.0, small_stem=True)
  config.colorization = dict(
    grid=10,
    neighbours=10,
    sigma=5.0,
    prior_sigma=5.0,
    uniform_mix=0.5,
    prior_images=10_000,
    gray_threshold=5.0,
    temperature=0.38,
    head_width=256,
  )
  config.augment.update(crop_scale=(0.5, 1.0), flip_prob=0.5, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
  config.batch_size = 256
  config.epochs = 100
  config.optimizer = dict(
    name="adamw", base_lr=1e-3, lr_scaling="linear", weight_decay=1e-3, warmup_steps=0, b1=0.9, b2=0.99
  )
  config.log_every = 50
  config.checkpoint_every = 2000
  config.eval_batch_size = 400
  config.eval_baselines = ("raw_pixels", "random_init")
  if "train_only" not in args:
    evals = {k: v for k, v in config.evals.to_dict().items() if k in ("linear", "knn", "fewshot")}
    config.evals = dict(evals, colorization=dict(type="colorization", every_steps=0, num_images=16))
  if "sample_photos" in args:  # The embedded colour data (no download): held-out regions of two photos.
    config.dataset.update(name="sample_photos", image_size=32)
    config.model.width = 0.5
    config.batch_size = 128
    config.epochs = 30
    config.eval_batch_size = 160
  if "runlocal" in args:  # A smoke run of the whole pipeline.
    config.dataset.image_size = 16
    config.model.width = 0.125
    config.colorization.update(prior_images=256, head_width=32)
    config.batch_size = 64
    config.total_steps = 12
    config.log_every = 2
    config.checkpoint_every = 4
    if "train_only" not in args:
      config.evals.linear.steps = 100
      config.evals.knn.update(ks=(20,), every_steps=4)
      config.evals.fewshot.shots = (1, 10)
  return config
