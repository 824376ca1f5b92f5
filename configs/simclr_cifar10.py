r"""SimCLR on CIFAR-10 with a small-stem ResNet-18. Default (v1): the SimCLR paper's CIFAR-10 settings (Chen et al.
2020, appendix B.9) as google-research/simclr's v1 README ran them (`--train_batch_size=512 --train_epochs=1000
--learning_rate=1.0 --weight_decay=1e-6 --temperature=0.5 --resnet_depth=18 --use_blur=False
--color_jitter_strength=0.5`): batch 512, LARS, lr 1.0 x B/256, weight decay 1e-6, temperature 0.5, colour-jitter
strength 0.5, no blur, 1000 epochs, v1's 2-layer projection head (128-d output) and the reference's initialisers
(convolutions fan-in truncated normal, projection head N(0, 0.01^2)). `:v2` switches to what the
repository's current README and code (SimCLR v2) run instead: weight decay 1e-4 and the 3-layer projection head
(`num_proj_layers=3`). One deviation remains in both: brightness is v2's multiplicative jitter (v1 adds a delta).

  python -m ssljax.train --config configs/simclr_cifar10.py --workdir /tmp/ssljax/simclr_cifar10
  python -m ssljax.train --config configs/simclr_cifar10.py:v2 --workdir /tmp/ssljax/simclr_cifar10_v2
  python -m ssljax.train --config configs/simclr_cifar10.py:runlocal --workdir /tmp/ssljax/simclr_cifar10_local

Needs the tfds `cifar10` ArrayRecord files (prepare once: `pip install -e .[prepare]` and
`python -m ssljax.prepare cifar10`). Expected, by google-research/simclr's README for its command:
~91% test accuracy after 1000 epochs under its linear evaluation (a zero-initialised head trained with Nesterov
SGD, lr 0.1 x B/256, batch 512, for 100 epochs on the frozen ResNet-18 with crops and flips): our
`linear_simclr/ssl/all`; `linear_fast/...` is our fast probe, not comparable. Not yet measured with this codebase.
"""

from ml_collections import config_dict

from configs import simclr_digits
from ssljax.evaluators import linear_eval


def get_config(arg: str = ""):
  config = simclr_digits.get_config()
  config.dataset = dict(
    name="cifar10",
    train_split="train",
    test_split="test",
    image_size=32,
    channels=3,
    data_dir=config_dict.placeholder(str),
    skip_bad_files=False,
    center_crop=1.0,
    host_crops=False,
    worker_processes=0,
  )
  config.model = dict(name="resnet", depth=18, width=1.0, small_stem=True, conv_init="simclr")
  config.simclr = dict(
    temperature=0.5,
    proj_dim=128,
    proj_layers=2,
    proj_hidden_dim=None,
    proj_init_std=0.01,
    block_size=config_dict.placeholder(int),
  )
  config.augment.update(crop_scale=(0.08, 1.0), flip_prob=0.5, grayscale_prob=0.2, blur_prob=0.0, blur_sigma=(0.1, 2.0))
  config.batch_size = 512
  config.epochs = 1000
  config.optimizer = dict(
    name="lars", base_lr=1.0, lr_scaling="linear", weight_decay=1e-6, warmup_steps=0, warmup_epochs=10, momentum=0.9
  )
  config.log_every = 50
  config.checkpoint_every = 2000
  config.eval_batch_size = 1000
  config.eval_baselines = ("random_init",)
  config.evals = dict(
    linear=dict(type="linear_probe", label_budgets=("all", 10), steps=2000, seed=0, every_steps=0),
    linear_simclr=linear_eval.paper_protocol("simclr", batch_size=512, epochs=100),
  )
  if "v2" in arg.split(","):
    config.optimizer.weight_decay = 1e-4
    config.simclr.proj_layers = 3
  if "runlocal" in arg.split(","):
    config.model.width = 0.25
    config.batch_size = 64
    config.total_steps = 20
    config.log_every = 5
    config.evals.linear.steps = 100
    config.evals.linear_simclr.update(epochs=1, baselines=())
  return config
